use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bars::Bars;
use crate::error::DomainError;
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
    /// volume is finite and ≥ 0.
    VolumeNonNegative,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::FinitePrices => "prices must be finite",
            Rule::HighAtLeastLow => "high < low",
            Rule::HighAtLeastOpenClose => "high < max(open, close)",
            Rule::LowAtMostOpenClose => "low > min(open, close)",
            Rule::VolumeNonNegative => "volume must be finite and >= 0",
        })
    }
}

/// One row that broke a rule (the first rule it broke).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleViolation {
    /// Row index in the batch, from 0.
    pub row: usize,
    pub timestamp: i64,
    pub rule: Rule,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} at {}: {}", self.row, format_timestamp(self.timestamp), self.rule)
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
    } else if !(v.is_finite() && v >= 0.0) {
        Some(Rule::VolumeNonNegative)
    } else {
        None
    }
}

/// Exactly `first_broken_rule(..).is_none()`, without branches.
#[inline]
fn row_ok(o: f64, h: f64, l: f64, c: f64, v: f64) -> bool {
    let finite = o.is_finite() & h.is_finite() & l.is_finite() & c.is_finite();
    // With finite prices `!(x < y)` is `x >= y`; a NaN makes `finite` false anyway.
    finite & (h >= l) & (h >= o.max(c)) & (l <= o.min(c)) & v.is_finite() & (v >= 0.0)
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
            ((10.0, 12.0, 9.0, 11.0, f64::NAN), Rule::VolumeNonNegative),
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
        assert!(message.contains("row 0 at 1970-01-01T00:00:00.000001Z: volume must be finite and >= 0"), "{message}");
    }

    #[test]
    fn drop_removes_bad_rows_and_counts_them_by_rule() {
        let rows = [
            GOOD,
            (f64::NAN, 1.0, 1.0, 1.0, 1.0),
            (10.0, 12.0, 9.0, 11.0, -1.0),
            (2.0, 3.0, 1.0, 2.5, 0.0),
            (10.0, 12.0, 9.0, 11.0, f64::INFINITY),
        ];
        let (kept, report) = validate(bars(&rows), ValidationPolicy::Drop).unwrap();
        assert_eq!((report.checked, report.dropped), (5, 3));
        assert_eq!(report.by_rule, BTreeMap::from([(Rule::FinitePrices, 1), (Rule::VolumeNonNegative, 2)]));
        assert_eq!(report.samples.iter().map(|v| v.row).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(kept.timestamps(), &[1000, 4000]);
        assert_eq!(kept.close(), &[11.0, 2.5]);
        assert_eq!(kept.extra("adj_close").unwrap().values(), &[Some(0.0), Some(3.0)], "extras stay aligned");
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

    #[test]
    fn policies_parse_and_display() {
        for p in [ValidationPolicy::Strict, ValidationPolicy::Drop, ValidationPolicy::Off] {
            assert_eq!(p.to_string().parse::<ValidationPolicy>(), Ok(p));
        }
        assert_eq!("reject".parse::<ValidationPolicy>(), Ok(ValidationPolicy::Strict));
        assert!("lenient".parse::<ValidationPolicy>().is_err());
    }
}
