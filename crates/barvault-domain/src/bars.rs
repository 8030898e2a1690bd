use std::sync::Arc;

use crate::error::DomainError;
use crate::merge::{MergePolicy, resolve_duplicates};
use crate::time::TimeRange;

/// The fixed leading columns of every series, in file order.
pub const CORE_COLUMNS: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// An optional named f64 column such as `adj_close` or `open_interest`; `None` is missing.
///
/// Values are shared (`Arc`), so cloning a column or a whole [`Bars`] is O(1); a column is
/// copied only when a shared one is modified.
#[derive(Debug, Clone, Default)]
pub struct ExtraColumn {
    name: String,
    values: Col<Option<f64>>,
}

/// A shared, immutable-by-default column.
type Col<T> = Arc<Vec<T>>;

impl ExtraColumn {
    /// A column whose name is already normalized (see [`ExtraColumn::normalize_name`]).
    pub fn new(name: &str, values: Vec<Option<f64>>) -> Result<Self, DomainError> {
        Self::check_name(name)?;
        Ok(Self { name: name.to_string(), values: Arc::new(values) })
    }

    /// Normalizes a header such as `Adj Close` or `OpenInterest` to `adj_close` / `openinterest`:
    /// ASCII lower case, every run of other characters folded to one `_`, trimmed.
    pub fn normalize_name(raw: &str) -> String {
        let mut out = String::with_capacity(raw.len());
        for c in raw.trim().chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
        }
        while out.ends_with('_') {
            out.pop();
        }
        out
    }

    /// Extra names are `[a-z][a-z0-9_]{0,63}` and never a core column name.
    pub fn check_name(name: &str) -> Result<(), DomainError> {
        let bad = |reason: &str| DomainError::InvalidColumn { name: shown_name(name), reason: reason.to_string() };
        if name.is_empty() || name.len() > 64 {
            return Err(bad("must be 1 to 64 characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("must start with a lower-case letter"));
        }
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(bad("only a-z, 0-9 and _ are allowed"));
        }
        if CORE_COLUMNS.contains(&name) {
            return Err(bad("is a core column"));
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn values(&self) -> &[Option<f64>] {
        &self.values
    }
}

impl PartialEq for ExtraColumn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.values.len() == other.values.len()
            && self.values.iter().zip(other.values.iter()).all(|(a, b)| opt_bits(*a) == opt_bits(*b))
    }
}

fn opt_bits(v: Option<f64>) -> Option<u64> {
    v.map(f64::to_bits)
}

/// The length of the common prefix of two equally long slices under `eq`, found a block
/// at a time so that the equal blocks (nearly all) compare without a branch per value.
fn common_len<T: Copy>(a: &[T], b: &[T], eq: impl Fn(T, T) -> bool) -> usize {
    const BLOCK: usize = 256;
    let mut done = 0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        if x.iter().zip(y).fold(true, |all, (&p, &q)| all & eq(p, q)) {
            done += x.len();
        } else {
            return done + x.iter().zip(y).take_while(|&(&p, &q)| eq(p, q)).count();
        }
    }
    done
}

fn same_f64(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A time-sorted, columnar frame of bars with unique UTC timestamps (ns since the epoch).
///
/// Equality is bit-exact on every float, so `-0.0 != 0.0` and a NaN equals itself:
/// the store promises exact round trips, and tests compare with this.
///
/// Columns are shared, so `clone` is O(1): a frame can be handed to several writers (CSV
/// and Parquet on their own threads) without copying a million rows for each.
#[derive(Debug, Clone, Default)]
pub struct Bars {
    pub(crate) ts: Col<i64>,
    pub(crate) open: Col<f64>,
    pub(crate) high: Col<f64>,
    pub(crate) low: Col<f64>,
    pub(crate) close: Col<f64>,
    pub(crate) volume: Col<f64>,
    /// Sorted by name, names unique, each as long as `ts`.
    pub(crate) extras: Vec<ExtraColumn>,
}

impl PartialEq for Bars {
    fn eq(&self, other: &Self) -> bool {
        self.ts == other.ts
            && same_f64(&self.open, &other.open)
            && same_f64(&self.high, &other.high)
            && same_f64(&self.low, &other.low)
            && same_f64(&self.close, &other.close)
            && same_f64(&self.volume, &other.volume)
            && self.extras == other.extras
    }
}

impl Bars {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a frame from columns; timestamps must be strictly increasing and every
    /// column as long as `ts`. Extras are reordered by name; duplicate names are refused.
    pub fn new(
        ts: Vec<i64>,
        open: Vec<f64>,
        high: Vec<f64>,
        low: Vec<f64>,
        close: Vec<f64>,
        volume: Vec<f64>,
        extras: Vec<ExtraColumn>,
    ) -> Result<Self, DomainError> {
        let bars = Self::from_parts_unchecked_order(ts, open, high, low, close, volume, extras)?;
        if let Some(row) = bars.ts.windows(2).position(|w| w[0] >= w[1]) {
            return Err(DomainError::Unsorted { row: row + 1, previous: bars.ts[row], current: bars.ts[row + 1] });
        }
        Ok(bars)
    }

    /// Length and name checks, no order check.
    fn from_parts_unchecked_order(
        ts: Vec<i64>,
        open: Vec<f64>,
        high: Vec<f64>,
        low: Vec<f64>,
        close: Vec<f64>,
        volume: Vec<f64>,
        mut extras: Vec<ExtraColumn>,
    ) -> Result<Self, DomainError> {
        let n = ts.len();
        let check = |name: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(DomainError::LengthMismatch { column: name.to_string(), expected: n, actual: len })
            }
        };
        check("open", open.len())?;
        check("high", high.len())?;
        check("low", low.len())?;
        check("close", close.len())?;
        check("volume", volume.len())?;
        for e in &extras {
            ExtraColumn::check_name(&e.name)?;
            check(&e.name, e.values.len())?;
        }
        extras.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = extras.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(DomainError::InvalidColumn { name: w[0].name.clone(), reason: "appears twice".into() });
        }
        Ok(Self {
            ts: Arc::new(ts),
            open: Arc::new(open),
            high: Arc::new(high),
            low: Arc::new(low),
            close: Arc::new(close),
            volume: Arc::new(volume),
            extras,
        })
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn timestamps(&self) -> &[i64] {
        &self.ts
    }
    pub fn open(&self) -> &[f64] {
        &self.open
    }
    pub fn high(&self) -> &[f64] {
        &self.high
    }
    pub fn low(&self) -> &[f64] {
        &self.low
    }
    pub fn close(&self) -> &[f64] {
        &self.close
    }
    pub fn volume(&self) -> &[f64] {
        &self.volume
    }

    /// Extra columns, sorted by name.
    pub fn extras(&self) -> &[ExtraColumn] {
        &self.extras
    }

    pub fn extra(&self, name: &str) -> Option<&ExtraColumn> {
        self.extras.iter().find(|e| e.name == name)
    }

    /// `timestamp, open, high, low, close, volume`, then the extras by name.
    /// How many leading rows `self` and `other` share exactly (bit-exact values, same
    /// columns); 0 when their columns differ. A store that keeps the bytes of a stored
    /// version's unchanged rows asks this of the stored and the new version.
    pub fn common_prefix_len(&self, other: &Bars) -> usize {
        let same_columns = self.extras.len() == other.extras.len()
            && self.extras.iter().zip(&other.extras).all(|(a, b)| a.name == b.name);
        if !same_columns {
            return 0;
        }
        let mut n = self.len().min(other.len());
        n = common_len(&self.ts[..n], &other.ts[..n], |x, y| x == y);
        for (a, b) in [
            (&self.open, &other.open),
            (&self.high, &other.high),
            (&self.low, &other.low),
            (&self.close, &other.close),
            (&self.volume, &other.volume),
        ] {
            n = common_len(&a[..n], &b[..n], |x, y| x.to_bits() == y.to_bits());
        }
        for (a, b) in self.extras.iter().zip(&other.extras) {
            n = common_len(&a.values[..n], &b.values[..n], |x, y| x.map(f64::to_bits) == y.map(f64::to_bits));
        }
        n
    }

    pub fn column_names(&self) -> Vec<String> {
        CORE_COLUMNS.iter().map(|s| s.to_string()).chain(self.extras.iter().map(|e| e.name.clone())).collect()
    }

    pub fn first_timestamp(&self) -> Option<i64> {
        self.ts.first().copied()
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        self.ts.last().copied()
    }

    /// Row indices `[lo, hi)` whose timestamps fall in `range` (binary search).
    pub fn range_bounds(&self, range: &TimeRange) -> (usize, usize) {
        let lo = range.start.map_or(0, |s| self.ts.partition_point(|&t| t < s));
        let hi = range.end.map_or(self.ts.len(), |e| self.ts.partition_point(|&t| t <= e));
        (lo, hi.max(lo))
    }

    /// The rows inside `range`, in O(log n) plus the copy of the result.
    pub fn slice(&self, range: &TimeRange) -> Bars {
        let (lo, hi) = self.range_bounds(range);
        self.slice_rows(lo, hi)
    }

    /// Rows `[lo, hi)`, clamped to the frame.
    pub fn slice_rows(&self, lo: usize, hi: usize) -> Bars {
        let hi = hi.min(self.len());
        let lo = lo.min(hi);
        if lo == 0 && hi == self.len() {
            return self.clone();
        }
        Bars {
            ts: Arc::new(self.ts[lo..hi].to_vec()),
            open: Arc::new(self.open[lo..hi].to_vec()),
            high: Arc::new(self.high[lo..hi].to_vec()),
            low: Arc::new(self.low[lo..hi].to_vec()),
            close: Arc::new(self.close[lo..hi].to_vec()),
            volume: Arc::new(self.volume[lo..hi].to_vec()),
            extras: self
                .extras
                .iter()
                .map(|e| ExtraColumn { name: e.name.clone(), values: Arc::new(e.values[lo..hi].to_vec()) })
                .collect(),
        }
    }

    /// Keeps the rows whose flag is true (`keep.len()` must equal `len()`; extra flags are ignored).
    pub fn retain_rows(&mut self, keep: &[bool]) {
        fn retain<T: Copy>(v: &mut Col<T>, keep: &[bool]) {
            let mut i = 0;
            Arc::make_mut(v).retain(|_| {
                let k = keep.get(i).copied().unwrap_or(true);
                i += 1;
                k
            });
        }
        retain(&mut self.ts, keep);
        retain(&mut self.open, keep);
        retain(&mut self.high, keep);
        retain(&mut self.low, keep);
        retain(&mut self.close, keep);
        retain(&mut self.volume, keep);
        for e in &mut self.extras {
            retain(&mut e.values, keep);
        }
    }

    /// Drops extra columns whose every value is missing.
    pub fn drop_empty_extras(&mut self) {
        self.extras.retain(|e| e.values.iter().any(Option::is_some));
    }
}

/// Bars as a decoder reads them: in file order, possibly unsorted or with repeated
/// timestamps. [`RawBars::into_bars`] turns them into [`Bars`] under a merge policy.
#[derive(Debug, Clone, Default)]
pub struct RawBars {
    pub ts: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
    /// Extra columns in any order; names must be normalized and unique.
    pub extras: Vec<ExtraColumn>,
}

impl RawBars {
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            ts: Vec::with_capacity(rows),
            open: Vec::with_capacity(rows),
            high: Vec::with_capacity(rows),
            low: Vec::with_capacity(rows),
            close: Vec::with_capacity(rows),
            volume: Vec::with_capacity(rows),
            extras: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one row of the core columns (extras are pushed separately). Inline across
    /// crates: decoders call it once per row.
    #[inline]
    pub fn push(&mut self, ts: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) {
        self.ts.push(ts);
        self.open.push(open);
        self.high.push(high);
        self.low.push(low);
        self.close.push(close);
        self.volume.push(volume);
    }

    /// Sorts by timestamp (stable) and resolves repeated timestamps with `policy`, exactly
    /// as [`crate::merge`] resolves them between two batches. Returns the frame and how many
    /// rows were folded away as duplicates.
    pub fn into_bars(self, policy: MergePolicy) -> Result<(Bars, usize), DomainError> {
        let bars = Bars::from_parts_unchecked_order(
            self.ts,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.extras,
        )?;
        if bars.ts.windows(2).all(|w| w[0] < w[1]) {
            return Ok((bars, 0));
        }
        resolve_duplicates(bars, policy)
    }
}

impl From<Bars> for RawBars {
    /// Takes the columns back, copying only those still shared with another frame.
    fn from(b: Bars) -> Self {
        let own = |c: Col<f64>| Arc::unwrap_or_clone(c);
        RawBars {
            ts: Arc::unwrap_or_clone(b.ts),
            open: own(b.open),
            high: own(b.high),
            low: own(b.low),
            close: own(b.close),
            volume: own(b.volume),
            extras: b.extras,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bars {
        Bars::new(
            vec![10, 20, 30, 40],
            vec![1.0, 2.0, 3.0, 4.0],
            vec![1.5, 2.5, 3.5, 4.5],
            vec![0.5, 1.5, 2.5, 3.5],
            vec![1.2, 2.2, 3.2, 4.2],
            vec![100.0, 200.0, 300.0, 400.0],
            vec![ExtraColumn::new("adj_close", vec![Some(1.0), None, Some(3.0), None]).unwrap()],
        )
        .unwrap()
    }

    fn long(n: usize, extra: &str) -> Bars {
        let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let e: Vec<Option<f64>> = (0..n).map(|i| (i % 3 != 0).then_some(i as f64)).collect();
        let ts = (0..n as i64).map(|i| i * 10).collect();
        Bars::new(ts, v.clone(), v.clone(), v.clone(), v.clone(), v, vec![ExtraColumn::new(extra, e).unwrap()]).unwrap()
    }

    /// Every kind of first difference, in every column and at block edges, ends the prefix
    /// exactly there; bit-exact, so `-0.0` differs from `0.0` and NaN equals NaN.
    #[test]
    fn common_prefix_stops_at_the_first_differing_row() {
        let n = 1000;
        let base = long(n, "oi");
        assert_eq!(base.common_prefix_len(&base.clone()), n);
        assert_eq!(base.common_prefix_len(&long(n - 7, "oi")), n - 7);
        assert_eq!(base.common_prefix_len(&long(n, "adj")), 0, "different columns share nothing");
        for at in [0, 1, 255, 256, 257, 511, 999] {
            for column in 0..7 {
                let mut b = RawBars::from(base.clone());
                match column {
                    0 => b.ts[at] += 1,
                    1 => b.open[at] = if at == 0 { -0.0 } else { f64::NAN },
                    2 => b.high[at] += 1.0,
                    3 => b.low[at] = -b.low[at] - 1.0,
                    4 => b.close[at] = f64::INFINITY,
                    5 => b.volume[at] += 0.25,
                    _ => {
                        let mut v = b.extras[0].values().to_vec();
                        v[at] = if v[at].is_some() { None } else { Some(0.0) };
                        b.extras[0] = ExtraColumn::new("oi", v).unwrap();
                    }
                }
                let other = Bars::new(b.ts, b.open, b.high, b.low, b.close, b.volume, b.extras).unwrap();
                assert_eq!(base.common_prefix_len(&other), at, "column {column}, row {at}");
                assert_eq!(other.common_prefix_len(&base), at, "symmetric");
            }
        }
        let mut nan = RawBars::from(base.clone());
        nan.close[5] = f64::NAN;
        let nan = Bars::new(nan.ts, nan.open, nan.high, nan.low, nan.close, nan.volume, nan.extras).unwrap();
        assert_eq!(nan.common_prefix_len(&nan.clone()), n);
    }

    #[test]
    fn rejects_unsorted_and_mismatched() {
        let r = Bars::new(vec![2, 1], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![]);
        assert!(matches!(r, Err(DomainError::Unsorted { row: 1, .. })));
        let r = Bars::new(vec![1, 1], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![]);
        assert!(r.is_err());
        let r = Bars::new(vec![1, 2], vec![1.0; 1], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![1.0; 2], vec![]);
        assert!(matches!(r, Err(DomainError::LengthMismatch { .. })));
    }

    #[test]
    fn slices_by_inclusive_range() {
        let b = sample();
        let s = b.slice(&TimeRange::new(Some(15), Some(30)).unwrap());
        assert_eq!(s.timestamps(), &[20, 30]);
        assert_eq!(s.extra("adj_close").unwrap().values(), &[None, Some(3.0)]);
        assert_eq!(b.slice(&TimeRange::all()), b);
        assert!(b.slice(&TimeRange::new(Some(41), None).unwrap()).is_empty());
        assert_eq!(b.first_timestamp(), Some(10));
        assert_eq!(b.last_timestamp(), Some(40));
    }

    #[test]
    fn normalizes_header_names() {
        assert_eq!(ExtraColumn::normalize_name("Adj Close"), "adj_close");
        assert_eq!(ExtraColumn::normalize_name(" Open Int "), "open_int");
        assert_eq!(ExtraColumn::normalize_name("%Chg"), "chg");
        assert!(ExtraColumn::check_name("close").is_err());
        assert!(ExtraColumn::check_name("9x").is_err());
    }

    #[test]
    fn equality_is_bitwise() {
        let a = Bars::new(vec![1], vec![0.0], vec![0.0], vec![0.0], vec![0.0], vec![0.0], vec![]).unwrap();
        let b = Bars::new(vec![1], vec![-0.0], vec![0.0], vec![0.0], vec![0.0], vec![0.0], vec![]).unwrap();
        assert_ne!(a, b);
    }
}

/// At most this many characters of a refused name are repeated in its error.
const SHOWN_NAME_CHARS: usize = 80;

/// `name` as an error shows it: a hostile header of one 200 MB "column name" must not
/// become a 200 MB message, so a long name is cut, with its length given.
fn shown_name(name: &str) -> String {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &name[..cut], name.len()),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod shown_names {
    use super::*;

    #[test]
    fn a_huge_column_name_gives_a_short_error() {
        let huge = "x".repeat(10 << 20);
        let e = ExtraColumn::check_name(&huge).expect_err("too long");
        let text = e.to_string();
        assert!(text.len() < 300, "{} bytes", text.len());
        assert!(text.contains("10485760 bytes"), "{text}");
        let e = ExtraColumn::check_name("Élan").expect_err("upper case");
        assert!(e.to_string().contains("Élan"), "{e}");
    }
}
