//! Where decoded rows go: growing columns of their own, or a region of the final columns
//! that a worker thread writes in place.

use barvault_domain::RawBars;
use barvault_ports::CodecError;

/// Decoded rows in file order: the core columns and one column per extra of the layout.
#[derive(Debug, Default)]
pub(super) struct Columns {
    pub(super) bars: RawBars,
    pub(super) extras: Vec<Vec<Option<f64>>>,
}

impl Columns {
    pub(super) fn with_capacity(rows: usize, extras: usize) -> Self {
        Columns { bars: RawBars::with_capacity(rows), extras: (0..extras).map(|_| Vec::with_capacity(rows)).collect() }
    }

    pub(super) fn len(&self) -> usize {
        self.bars.len()
    }

    /// Room for `rows` rows in all, so that appending does not move the columns again.
    pub(super) fn reserve_total(&mut self, rows: usize) {
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
    pub(super) fn append(&mut self, other: &mut Columns) {
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

    pub(super) fn clear(&mut self) {
        self.truncate(0);
    }

    pub(super) fn truncate(&mut self, rows: usize) {
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
    pub(super) fn zero_extended(&self, rows: usize) -> Columns {
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
    pub(super) fn move_rows(&mut self, from: usize, rows: usize, to: usize) -> Result<(), CodecError> {
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
    pub(super) fn copy_rows(&self, from: usize, rows: usize) -> Result<Columns, CodecError> {
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
/// parsers inlined, serves both sinks for one indirect call per row (two monomorphized
/// copies are slower: docs/BENCHMARKS.md, "Tuning constants").
pub(super) trait Sink {
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
pub(super) struct Region<'a> {
    /// The row of the final columns this stretch starts at.
    pub(super) start: usize,
    pub(super) ts: &'a mut [i64],
    pub(super) values: [&'a mut [f64]; 5],
    pub(super) extras: Vec<&'a mut [Option<f64>]>,
    /// Rows written.
    pub(super) len: usize,
    pub(super) overflow: bool,
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
pub(super) struct Free<'a> {
    pub(super) next: usize,
    /// Set once a region was refused.
    pub(super) spent: bool,
    pub(super) ts: &'a mut [i64],
    pub(super) values: [&'a mut [f64]; 5],
    pub(super) extras: Vec<&'a mut [Option<f64>]>,
}

/// The first `n` items of `s`, which keeps the rest; `None` (and `s` unchanged) when shorter.
pub(super) fn split_off<'a, T>(s: &mut &'a mut [T], n: usize) -> Option<&'a mut [T]> {
    if n > s.len() {
        return None;
    }
    let (head, tail) = std::mem::take(s).split_at_mut_checked(n)?;
    *s = tail;
    Some(head)
}

impl<'a> Free<'a> {
    /// Rows `from..` of `columns`.
    pub(super) fn new(columns: &'a mut Columns, from: usize) -> Self {
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
    pub(super) fn take(&mut self, rows: usize) -> Option<Region<'a>> {
        let fits = !self.spent
            && self.ts.len() >= rows
            && self.values.iter().all(|c| c.len() >= rows)
            && self.extras.iter().all(|c| c.len() >= rows);
        let region = if fits { self.split(rows) } else { None };
        self.spent = region.is_none();
        region
    }

    pub(super) fn split(&mut self, rows: usize) -> Option<Region<'a>> {
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
