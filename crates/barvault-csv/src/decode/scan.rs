//! Records and their fields: quote-free text split into records without csv's reader, the
//! records of a settled layout decoded into rows, and the counting of records and line ends
//! that sizes the columns and numbers the lines of errors.

use std::borrow::Cow;

use barvault_domain::TimeRange;
use barvault_ports::CodecError;

use super::header::{Layout, TsCols};
use super::sink::Sink;
use crate::number::{decimal_prefix, is_missing, parse_extra, parse_f64};
use crate::timestamp::{TimestampError, TimestampParser};

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
pub(super) struct Line<'a> {
    pub(super) text: &'a [u8],
    pub(super) ends: Vec<usize>,
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
pub(super) const STOP: [bool; 256] = {
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
pub(super) fn next_stop(text: &[u8], mut i: usize) -> usize {
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
pub(super) fn scan_records<S, E>(
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

pub(super) fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

pub(super) fn cell_error(line: u64, column: &str, value: &[u8], reason: &str) -> CodecError {
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

pub(super) fn csv_error(e: csv::Error) -> CodecError {
    let line = e.position().map(csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => CodecError::Io(io),
        other => CodecError::parse(line, None, None, format!("unreadable CSV: {other:?}")),
    }
}

/// An error found in a piece of the input, moved to its line in the whole input.
pub(super) fn shift_line(e: CodecError, lines_before: u64) -> CodecError {
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

pub(super) fn core_value(
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

/// At least as many as the records of quote-free `text` (and so the rows it decodes to), and
/// as many when every line is a record: its record ends, each `\n` and each `\r` not
/// followed by a `\n`, and one more when `text` does not end in a `\r` or `\n`. (A record
/// is a run of bytes other than `\r` and `\n`, so the byte after it is a record end, or the
/// `\r` of a `\r\n`, or there is none and the record ends `text`.)
pub(super) fn record_bound(text: &[u8]) -> usize {
    let last = usize::from(text.last().is_some_and(|&b| b != b'\r' && b != b'\n'));
    let (newlines, returns) = count_line_bytes(text);
    if returns == 0 {
        return newlines + last;
    }
    record_ends(text) + last
}

/// The record ends of `text`: each `\n`, and each `\r` not followed by a `\n`. Counted 32
/// bytes at a time into byte counters, which vectorizes.
pub(super) fn record_ends(text: &[u8]) -> usize {
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
pub(super) fn count_line_bytes(text: &[u8]) -> (usize, usize) {
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
pub(super) struct Rows {
    pub(super) parser: TimestampParser,
    pub(super) range: TimeRange,
}

impl Rows {
    pub(super) fn new(range: TimeRange) -> Self {
        Rows { parser: TimestampParser::default(), range }
    }

    /// Decodes one data record into `out` (or skips it when it is blank or outside the range).
    pub(super) fn row(
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
    pub(super) fn canonical(&mut self, text: &[u8], out: &mut dyn Sink) -> Option<usize> {
        let (ts, [open, high, low, close, volume], len) = canonical_record(text, &mut self.parser)?;
        if self.range.contains(ts) {
            out.push(ts, open, high, low, close, volume);
        }
        Some(len)
    }
}

/// Decodes the data records of one piece of quote-free input into `out` under a settled
/// layout; line numbers in errors count from the start of the piece. `Ok(None)` when the
/// piece holds a `"` (then `out` holds garbage and the piece must be decoded by csv's reader).
///
/// Under the canonical layout each record is first tried by [`Rows::canonical`], and only
/// the records it declines are split into fields and decoded by [`Rows::row`].
pub(super) fn decode_piece(
    layout: &Layout,
    range: TimeRange,
    text: &[u8],
    out: &mut dyn Sink,
) -> Result<Option<u64>, CodecError> {
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
pub(super) fn canonical_record(text: &[u8], parser: &mut TimestampParser) -> Option<(i64, [f64; 5], usize)> {
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

pub(super) fn has_quote(text: &[u8]) -> bool {
    text.contains(&b'"')
}
