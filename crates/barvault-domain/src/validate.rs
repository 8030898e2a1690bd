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

/// Checks every bar under `policy`: strict refuses the batch, drop removes bad rows, off passes all.
pub fn validate(mut bars: Bars, policy: ValidationPolicy) -> Result<(Bars, ValidationReport), DomainError> {
    let mut report = ValidationReport { checked: bars.len(), ..Default::default() };
    if policy == ValidationPolicy::Off {
        return Ok((bars, report));
    }
    let mut keep = Vec::new();
    for row in 0..bars.len() {
        let rule = first_broken_rule(bars.open[row], bars.high[row], bars.low[row], bars.close[row], bars.volume[row]);
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
