use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bars::Bars;
use crate::error::DomainError;
use crate::period::Period;
use crate::time::format_timestamp;

/// What to do with bars that break a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationPolicy {
    /// Refuse the whole batch, listing up to ten offending rows.
    #[default]
    Strict,
    /// Remove invalid rows and report how many and why.
    Drop,
    /// Store bars as given.
    Off,
}

impl FromStr for ValidationPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" | "reject" => Ok(ValidationPolicy::Strict),
            "drop" => Ok(ValidationPolicy::Drop),
            "off" | "none" => Ok(ValidationPolicy::Off),
            _ => Err(format!("unknown validation policy {s:?} (expected strict, drop or off)")),
        }
    }
}

impl fmt::Display for ValidationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValidationPolicy::Strict => "strict",
            ValidationPolicy::Drop => "drop",
            ValidationPolicy::Off => "off",
        })
    }
}

/// A bar rule. Negative prices are valid (WTI settled at −37.63 on 2020-04-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// open, high, low and close are finite.
    FinitePrices,
    /// high ≥ low.
    HighAtLeastLow,
    /// high ≥ max(open, close).
    HighAtLeastOpenClose,
    /// low ≤ min(open, close).
    LowAtMostOpenClose,
    /// volume is missing (NaN) or finite and ≥ 0.
    VolumeNonNegative,
    /// The bar sits on its series' time grid (see [`Grid`]).
    OnGrid,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::FinitePrices => "prices must be finite",
            Rule::HighAtLeastLow => "high < low",
            Rule::HighAtLeastOpenClose => "high < max(open, close)",
            Rule::LowAtMostOpenClose => "low > min(open, close)",
            Rule::VolumeNonNegative => "volume must be finite and >= 0 (or missing)",
            Rule::OnGrid => "not on the series' time grid",
        })
    }
}

/// One row that broke a rule (the first rule it broke).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleViolation {
    /// Row index in the (sorted) batch, from 0. A caller that knows where the batch came
    /// from names the row its own way (a file line); the timestamp names it in any case.
    pub row: usize,
    pub timestamp: i64,
    pub rule: Rule,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bar {} at {}: {}", self.row + 1, format_timestamp(self.timestamp), self.rule)
    }
}

/// What validation found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub checked: usize,
    pub dropped: usize,
    pub by_rule: BTreeMap<Rule, usize>,
    /// Up to ten examples.
    pub samples: Vec<RuleViolation>,
    /// The grid bars were checked against, when [`check_grid`] ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Grid>,
}

impl ValidationReport {
    /// Adds what a later check of the same batch found (`other.checked` is not added: it
    /// counts the same bars, less those already dropped).
    pub fn absorb(&mut self, other: ValidationReport) {
        self.dropped += other.dropped;
        for (rule, n) in other.by_rule {
            *self.by_rule.entry(rule).or_default() += n;
        }
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
        self.grid = other.grid.or(self.grid);
    }

    /// The rules broken and how often, as text: `high < low: 2, not on the series' time grid: 1`.
    pub fn summary(&self) -> String {
        self.by_rule.iter().map(|(rule, n)| format!("{rule}: {n}")).collect::<Vec<_>>().join(", ")
    }
}

const MAX_SAMPLES: usize = 10;

fn first_broken_rule(o: f64, h: f64, l: f64, c: f64, v: f64) -> Option<Rule> {
    if !(o.is_finite() && h.is_finite() && l.is_finite() && c.is_finite()) {
        Some(Rule::FinitePrices)
    } else if h < l {
        Some(Rule::HighAtLeastLow)
    } else if h < o.max(c) {
        Some(Rule::HighAtLeastOpenClose)
    } else if l > o.min(c) {
        Some(Rule::LowAtMostOpenClose)
    } else if !(v.is_nan() || (v.is_finite() && v >= 0.0)) {
        Some(Rule::VolumeNonNegative)
    } else {
        None
    }
}

/// Exactly `first_broken_rule(..).is_none()`, without branches.
#[inline]
fn row_ok(o: f64, h: f64, l: f64, c: f64, v: f64) -> bool {
    let finite = o.is_finite() & h.is_finite() & l.is_finite() & c.is_finite();
    // With finite prices `!(x < y)` is `x >= y`; a NaN makes `finite` false anyway. A NaN
    // volume is a missing one.
    finite & (h >= l) & (h >= o.max(c)) & (l <= o.min(c)) & (v.is_nan() | (v.is_finite() & (v >= 0.0)))
}

/// Checks every bar under `policy`: strict refuses the batch, drop removes bad rows, off passes all.
pub fn validate(mut bars: Bars, policy: ValidationPolicy) -> Result<(Bars, ValidationReport), DomainError> {
    let mut report = ValidationReport { checked: bars.len(), ..Default::default() };
    if policy == ValidationPolicy::Off {
        return Ok((bars, report));
    }
    let mut keep = Vec::new();
    // Blocks of rows that break no rule (nearly all) are passed in one branch-free sweep;
    // only a block with a broken rule is looked at row by row.
    const BLOCK: usize = 512;
    for start in (0..bars.len()).step_by(BLOCK) {
        let end = (start + BLOCK).min(bars.len());
        let r = start..end;
        let block_ok = (bars.open[r.clone()].iter().zip(&bars.high[r.clone()]))
            .zip(bars.low[r.clone()].iter().zip(&bars.close[r.clone()]))
            .zip(&bars.volume[r])
            .fold(true, |all, (((&o, &h), (&l, &c)), &v)| all & row_ok(o, h, l, c, v));
        if block_ok {
            continue;
        }
        for row in start..end {
            let rule =
                first_broken_rule(bars.open[row], bars.high[row], bars.low[row], bars.close[row], bars.volume[row]);
            if let Some(rule) = rule {
                if keep.is_empty() {
                    keep = vec![true; bars.len()];
                }
                keep[row] = false;
                *report.by_rule.entry(rule).or_default() += 1;
                if report.samples.len() < MAX_SAMPLES {
                    report.samples.push(RuleViolation { row, timestamp: bars.ts[row], rule });
                }
            }
        }
    }
    let bad: usize = report.by_rule.values().sum();
    if bad == 0 {
        return Ok((bars, report));
    }
    if policy == ValidationPolicy::Strict {
        return Err(DomainError::Validation { count: bad, violations: report.samples });
    }
    bars.retain_rows(&keep);
    report.dropped = bad;
    Ok((bars, report))
}

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Where the bars of a series sit in time. Intraday bars sit at one offset within their
/// period, counted from midnight UTC (every `1m` bar at second :00, or every `1h` bar at
/// minute :30 for a market that opens on the half hour); bars of a day and longer sit at
/// one time of day (midnight UTC for most sources, 05:00 UTC for a New York midnight
/// written with its offset). So a daily series holds at most one bar per calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub period: Period,
    /// Nanoseconds past the period's boundary (intraday) or past midnight UTC.
    pub offset: i64,
}

impl Grid {
    /// What offsets are taken modulo: the period (intraday) or one day.
    fn modulus(period: Period) -> i64 {
        period.intraday_nanos().unwrap_or(NANOS_PER_DAY)
    }

    /// The grid of `period` through `ts`.
    pub fn through(period: Period, ts: i64) -> Grid {
        Grid { period, offset: ts.rem_euclid(Self::modulus(period)) }
    }

    /// The grid most of `timestamps` sit on (on a tie, the one the earliest of them sits
    /// on); `None` for no timestamps.
    pub fn dominant(period: Period, timestamps: &[i64]) -> Option<Grid> {
        let first = Grid::through(period, *timestamps.first()?);
        if first.count_off(timestamps) == 0 {
            return Some(first);
        }
        let m = Self::modulus(period);
        let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
        for &t in timestamps {
            *counts.entry(t.rem_euclid(m)).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        timestamps
            .iter()
            .map(|&t| t.rem_euclid(m))
            .find(|o| counts.get(o) == Some(&most))
            .map(|offset| Grid { period, offset })
    }

    /// Whether a bar at `ts` sits on this grid.
    pub fn contains(&self, ts: i64) -> bool {
        ts.rem_euclid(Self::modulus(self.period)) == self.offset
    }

    /// How many of `timestamps` are off the grid. The common periods get a constant
    /// divisor (a multiply, not a division per bar): this runs over every imported bar.
    fn count_off(&self, timestamps: &[i64]) -> usize {
        fn off<const M: i64>(ts: &[i64], offset: i64) -> usize {
            ts.iter().map(|&t| usize::from(t.rem_euclid(M) != offset)).sum()
        }
        const S: i64 = 1_000_000_000;
        match Self::modulus(self.period) {
            S => off::<S>(timestamps, self.offset),
            60_000_000_000 => off::<{ 60 * S }>(timestamps, self.offset),
            300_000_000_000 => off::<{ 300 * S }>(timestamps, self.offset),
            3_600_000_000_000 => off::<{ 3600 * S }>(timestamps, self.offset),
            NANOS_PER_DAY => off::<NANOS_PER_DAY>(timestamps, self.offset),
            m => timestamps.iter().filter(|&&t| t.rem_euclid(m) != self.offset).count(),
        }
    }
}

/// `HH:MM:SS` (with the fraction when there is one) of `nanos` past midnight.
fn time_of_day(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let hms = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 { hms } else { format!("{hms}.{}", format!("{frac:09}").trim_end_matches('0')) }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = time_of_day(self.offset);
        if self.period.is_intraday() {
            write!(f, "every {} from {at} UTC", self.period)
        } else {
            write!(f, "{} bars at {at} UTC", self.period)
        }
    }
}

/// Checks that every bar of `bars` sits on its series' grid ([`Grid`]): the grid most
/// of `stored` (the bars the series already holds) sit on, or, for a new series, the grid
/// most of `bars` sit on. Under `policy`, strict refuses a batch with a bar off the grid
/// (naming up to ten), drop removes those bars, off passes everything. A daily bar at
/// 05:00 UTC merged into a series of midnight bars would be a second bar for that day;
/// a tick in a minute series is not a minute bar.
pub fn check_grid(
    mut bars: Bars,
    period: Period,
    stored: Option<&Bars>,
    policy: ValidationPolicy,
) -> Result<(Bars, ValidationReport), DomainError> {
    let (keep, report) = off_grid(&bars, period, stored, policy)?;
    if let Some(keep) = keep {
        bars.retain_rows(&keep);
    }
    Ok((bars, report))
}

/// [`check_grid`] without touching `bars`: the report, and which rows to keep when some
/// must be dropped (`None` when every bar stays), so that a caller holding the bars by
/// reference copies them only when the check drops some.
pub fn off_grid(
    bars: &Bars,
    period: Period,
    stored: Option<&Bars>,
    policy: ValidationPolicy,
) -> Result<(Option<Vec<bool>>, ValidationReport), DomainError> {
    let mut report = ValidationReport { checked: bars.len(), ..Default::default() };
    if policy == ValidationPolicy::Off {
        return Ok((None, report));
    }
    let from_stored = stored.and_then(|s| Grid::dominant(period, s.timestamps()));
    let Some(grid) = from_stored.or_else(|| Grid::dominant(period, bars.timestamps())) else {
        return Ok((None, report));
    };
    report.grid = Some(grid);
    let bad = grid.count_off(bars.timestamps());
    if bad == 0 {
        return Ok((None, report));
    }
    let keep: Vec<bool> = bars.timestamps().iter().map(|&t| grid.contains(t)).collect();
    report.samples = (keep.iter().enumerate())
        .filter(|(_, k)| !**k)
        .take(MAX_SAMPLES)
        .map(|(row, _)| RuleViolation { row, timestamp: bars.ts[row], rule: Rule::OnGrid })
        .collect();
    report.by_rule.insert(Rule::OnGrid, bad);
    if policy == ValidationPolicy::Strict {
        return Err(DomainError::OffGrid { count: bad, grid, violations: report.samples });
    }
    report.dropped = bad;
    Ok((Some(keep), report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bars::ExtraColumn;

    type Row = (f64, f64, f64, f64, f64);

    /// Bars at timestamps 1000, 2000, … with an `adj_close` extra equal to the row index.
    fn bars(rows: &[Row]) -> Bars {
        let col = |f: fn(&Row) -> f64| rows.iter().map(f).collect::<Vec<_>>();
        let extra = ExtraColumn::new("adj_close", (0..rows.len()).map(|i| Some(i as f64)).collect()).unwrap();
        Bars::new(
            (1..=rows.len() as i64).map(|i| i * 1000).collect(),
            col(|r| r.0),
            col(|r| r.1),
            col(|r| r.2),
            col(|r| r.3),
            col(|r| r.4),
            vec![extra],
        )
        .unwrap()
    }

    const GOOD: Row = (10.0, 12.0, 9.0, 11.0, 100.0);

    /// The block sweep's test is the rule chain's, for every kind of value (NaN, the
    /// infinities, signed zeros, ties) in every position.
    #[test]
    fn row_ok_agrees_with_the_rules() {
        let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, -1.0, 1.0, 2.0, 3.0];
        for &o in &values {
            for &h in &values {
                for &l in &values {
                    for &c in &values {
                        for &v in &values {
                            assert_eq!(
                                row_ok(o, h, l, c, v),
                                first_broken_rule(o, h, l, c, v).is_none(),
                                "{o} {h} {l} {c} {v}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A broken row anywhere in a long batch, at block edges too, is found and dropped.
    #[test]
    fn broken_rows_are_found_in_any_block() {
        for bad in [0, 1, 511, 512, 513, 1023, 1500] {
            let mut rows = vec![GOOD; 1501];
            rows[bad] = (10.0, 8.0, 9.0, 11.0, 100.0);
            let (kept, report) = validate(bars(&rows), ValidationPolicy::Drop).unwrap();
            assert_eq!((kept.len(), report.dropped), (1500, 1), "row {bad}");
            assert_eq!(report.samples[0].row, bad);
        }
    }

    fn strict_violations(rows: &[Row]) -> (usize, Vec<RuleViolation>) {
        match validate(bars(rows), ValidationPolicy::Strict) {
            Err(DomainError::Validation { count, violations }) => (count, violations),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn each_rule_is_detected() {
        let cases: [(Row, Rule); 9] = [
            ((f64::NAN, 12.0, 9.0, 11.0, 1.0), Rule::FinitePrices),
            ((10.0, f64::INFINITY, 9.0, 11.0, 1.0), Rule::FinitePrices),
            ((10.0, 12.0, f64::NEG_INFINITY, 11.0, 1.0), Rule::FinitePrices),
            ((10.0, 12.0, 9.0, f64::NAN, 1.0), Rule::FinitePrices),
            ((10.0, 8.0, 9.0, 8.5, 1.0), Rule::HighAtLeastLow),
            ((10.0, 9.5, 8.0, 8.5, 1.0), Rule::HighAtLeastOpenClose),
            ((10.0, 11.0, 10.5, 10.8, 1.0), Rule::LowAtMostOpenClose),
            ((10.0, 12.0, 9.0, 11.0, -1.0), Rule::VolumeNonNegative),
            ((10.0, 12.0, 9.0, 11.0, f64::INFINITY), Rule::VolumeNonNegative),
        ];
        for (row, rule) in cases {
            let (count, violations) = strict_violations(&[GOOD, row, GOOD]);
            assert_eq!(count, 1, "{row:?}");
            assert_eq!(violations, vec![RuleViolation { row: 1, timestamp: 2000, rule }], "{row:?}");
        }
    }

    #[test]
    fn a_row_reports_only_its_first_broken_rule() {
        // Breaks high >= low, high >= max(open, close) and the volume rule.
        let (count, violations) = strict_violations(&[(10.0, 5.0, 6.0, 11.0, -1.0)]);
        assert_eq!((count, violations[0].rule), (1, Rule::HighAtLeastLow));
    }

    #[test]
    fn strict_lists_at_most_ten_rows_with_timestamp_and_rule() {
        let bad = (10.0, 12.0, 9.0, 11.0, -5.0);
        let rows: Vec<Row> = (0..25).map(|i| if i % 2 == 0 { bad } else { GOOD }).collect();
        let (count, violations) = strict_violations(&rows);
        assert_eq!(count, 13);
        assert_eq!(violations.len(), 10);
        for (k, v) in violations.iter().enumerate() {
            assert_eq!(v.row, 2 * k);
            assert_eq!(v.timestamp, (2 * k as i64 + 1) * 1000);
            assert_eq!(v.rule, Rule::VolumeNonNegative);
        }
        let message = validate(bars(&rows), ValidationPolicy::Strict).unwrap_err().to_string();
        assert!(message.starts_with("13 row(s) break validation rules"), "{message}");
        assert!(message.contains("bar 1 at 1970-01-01T00:00:00.000001Z: volume must be finite and >= 0"), "{message}");
    }

    #[test]
    fn drop_removes_bad_rows_and_counts_them_by_rule() {
        let rows = [
            GOOD,
            (f64::NAN, 1.0, 1.0, 1.0, 1.0),
            (10.0, 12.0, 9.0, 11.0, -1.0),
            (2.0, 3.0, 1.0, 2.5, 0.0),
            (10.0, 12.0, 9.0, 11.0, f64::INFINITY),
            (10.0, 12.0, 9.0, 11.0, f64::NAN),
        ];
        let (kept, report) = validate(bars(&rows), ValidationPolicy::Drop).unwrap();
        assert_eq!((report.checked, report.dropped), (6, 3));
        assert_eq!(report.by_rule, BTreeMap::from([(Rule::FinitePrices, 1), (Rule::VolumeNonNegative, 2)]));
        assert_eq!(report.summary(), "prices must be finite: 1, volume must be finite and >= 0 (or missing): 2");
        assert_eq!(report.samples.iter().map(|v| v.row).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(kept.timestamps(), &[1000, 4000, 6000], "a missing (NaN) volume is valid");
        assert_eq!(kept.close(), &[11.0, 2.5, 11.0]);
        assert_eq!(
            kept.extra("adj_close").unwrap().values(),
            &[Some(0.0), Some(3.0), Some(5.0)],
            "extras stay aligned"
        );
    }

    #[test]
    fn off_passes_everything_unchanged() {
        let rows = [(f64::NAN, -1.0, 5.0, 0.0, -3.0), GOOD];
        let input = bars(&rows);
        let (out, report) = validate(input.clone(), ValidationPolicy::Off).unwrap();
        assert_eq!(out, input);
        assert_eq!((report.checked, report.dropped, report.samples.len()), (2, 0, 0));
    }

    #[test]
    fn valid_bars_pass_strict_untouched_including_negative_prices() {
        // WTI on 2020-04-20 and a zero-volume bar with a -0.0 volume.
        let rows = [(17.73, 17.85, -40.32, -37.63, 1_000.0), (-14.0, 10.5, -16.74, 10.01, -0.0), GOOD];
        let input = bars(&rows);
        for policy in [ValidationPolicy::Strict, ValidationPolicy::Drop] {
            let (out, report) = validate(input.clone(), policy).unwrap();
            assert_eq!(out, input);
            assert_eq!(report, ValidationReport { checked: 3, ..Default::default() });
        }
    }

    #[test]
    fn empty_bars_are_valid() {
        let (out, report) = validate(Bars::empty(), ValidationPolicy::Strict).unwrap();
        assert!(out.is_empty());
        assert_eq!(report.checked, 0);
    }

    const MIN: i64 = 60_000_000_000;
    const DAY: i64 = 86_400_000_000_000;

    fn at(ts: &[i64]) -> Bars {
        let n = ts.len();
        Bars::new(ts.to_vec(), vec![1.0; n], vec![1.0; n], vec![1.0; n], vec![1.0; n], vec![1.0; n], vec![]).unwrap()
    }

    fn grid_error(result: Result<(Bars, ValidationReport), DomainError>) -> (usize, Grid, Vec<i64>) {
        match result {
            Err(DomainError::OffGrid { count, grid, violations }) => {
                (count, grid, violations.iter().map(|v| v.timestamp).collect())
            }
            other => panic!("expected an off-grid error, got {other:?}"),
        }
    }

    /// Daily bars at 05:00 UTC do not join a series whose bars are at midnight: strict
    /// names them, drop removes them, off lets them in.
    #[test]
    fn daily_bars_keep_the_series_time_of_day() {
        let stored = at(&[0, DAY, 2 * DAY]);
        let new = at(&[2 * DAY, 3 * DAY + 5 * 3600 * 1_000_000_000, 4 * DAY]);
        let (count, grid, ts) =
            grid_error(check_grid(new.clone(), Period::D1, Some(&stored), ValidationPolicy::Strict));
        assert_eq!((count, grid), (1, Grid { period: Period::D1, offset: 0 }));
        assert_eq!(ts, vec![3 * DAY + 5 * 3600 * 1_000_000_000]);
        assert_eq!(grid.to_string(), "1d bars at 00:00:00 UTC");
        let (kept, report) = check_grid(new.clone(), Period::D1, Some(&stored), ValidationPolicy::Drop).unwrap();
        assert_eq!(kept.timestamps(), &[2 * DAY, 4 * DAY]);
        assert_eq!((report.dropped, report.by_rule.get(&Rule::OnGrid)), (1, Some(&1)));
        let (all, _) = check_grid(new.clone(), Period::D1, Some(&stored), ValidationPolicy::Off).unwrap();
        assert_eq!(all, new);
        // A series of its own keeps the time of day most of its bars have.
        let five = 5 * 3600 * 1_000_000_000;
        let own = at(&[five, DAY + five, 2 * DAY, 3 * DAY + five]);
        let (count, grid, ts) = grid_error(check_grid(own, Period::D1, None, ValidationPolicy::Strict));
        assert_eq!((count, grid.to_string(), ts), (1, "1d bars at 05:00:00 UTC".to_string(), vec![2 * DAY]));
    }

    /// Ticks are not minute bars, and minute bars need not start on the hour's grid as
    /// long as they keep the series' offset.
    #[test]
    fn intraday_bars_sit_on_the_period_grid() {
        let ticks = at(&[MIN + 146_000_000, MIN + 4_151_000_000, 2 * MIN + 7_000_000_000]);
        let (count, grid, _) = grid_error(check_grid(ticks, Period::M1, None, ValidationPolicy::Strict));
        assert_eq!(count, 2);
        assert_eq!(grid.to_string(), "every 1m from 00:00:00.146 UTC");
        let half = at(&[30 * MIN, 90 * MIN, 150 * MIN]);
        assert!(check_grid(half.clone(), Period::H1, None, ValidationPolicy::Strict).is_ok());
        let (count, grid, _) =
            grid_error(check_grid(at(&[240 * MIN]), Period::H1, Some(&half), ValidationPolicy::Strict));
        assert_eq!((count, grid.to_string()), (1, "every 1h from 00:30:00 UTC".to_string()));
        for p in Period::ALL.into_iter().filter(|p| p.is_intraday()) {
            let n = p.intraday_nanos().unwrap();
            let on: Vec<i64> = (-3..500).map(|i| i * n).collect();
            assert!(check_grid(at(&on), p, None, ValidationPolicy::Strict).is_ok(), "{p}");
            let mut off = on.clone();
            off[250] += 1;
            let (count, _, ts) = grid_error(check_grid(at(&off), p, None, ValidationPolicy::Strict));
            assert_eq!((count, ts), (1, vec![off[250]]), "{p}");
        }
    }

    #[test]
    fn the_dominant_grid_breaks_ties_by_the_earliest_bar() {
        assert_eq!(Grid::dominant(Period::M1, &[]), None);
        assert_eq!(
            Grid::dominant(Period::M1, &[5, MIN + 7, 2 * MIN + 7]),
            Some(Grid { period: Period::M1, offset: 7 })
        );
        assert_eq!(Grid::dominant(Period::M1, &[5, MIN + 7]), Some(Grid { period: Period::M1, offset: 5 }));
        assert_eq!(Grid::through(Period::D1, -1), Grid { period: Period::D1, offset: DAY - 1 });
    }

    #[test]
    fn policies_parse_and_display() {
        for p in [ValidationPolicy::Strict, ValidationPolicy::Drop, ValidationPolicy::Off] {
            assert_eq!(p.to_string().parse::<ValidationPolicy>(), Ok(p));
        }
        assert_eq!("reject".parse::<ValidationPolicy>(), Ok(ValidationPolicy::Strict));
        assert!("lenient".parse::<ValidationPolicy>().is_err());
    }
}
