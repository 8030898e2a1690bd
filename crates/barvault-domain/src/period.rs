use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// A bar period. `1m` (one minute) and `1M` (one month) are different periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Period {
    M1,
    M2,
    M5,
    M10,
    M15,
    M20,
    M30,
    H1,
    H4,
    D1,
    W1,
    Mo1,
    Mo3,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 13] = [
        Period::M1,
        Period::M2,
        Period::M5,
        Period::M10,
        Period::M15,
        Period::M20,
        Period::M30,
        Period::H1,
        Period::H4,
        Period::D1,
        Period::W1,
        Period::Mo1,
        Period::Mo3,
    ];

    /// The canonical string, also the directory name on disk.
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::M1 => "1m",
            Period::M2 => "2m",
            Period::M5 => "5m",
            Period::M10 => "10m",
            Period::M15 => "15m",
            Period::M20 => "20m",
            Period::M30 => "30m",
            Period::H1 => "1h",
            Period::H4 => "4h",
            Period::D1 => "1d",
            Period::W1 => "1W",
            Period::Mo1 => "1M",
            Period::Mo3 => "3M",
        }
    }

    /// The nominal length of one bar: a month counts 30 days, a quarter 91.
    pub const fn nominal_duration(self) -> Duration {
        const MIN: u64 = 60;
        const DAY: u64 = 86_400;
        Duration::from_secs(match self {
            Period::M1 => MIN,
            Period::M2 => 2 * MIN,
            Period::M5 => 5 * MIN,
            Period::M10 => 10 * MIN,
            Period::M15 => 15 * MIN,
            Period::M20 => 20 * MIN,
            Period::M30 => 30 * MIN,
            Period::H1 => 60 * MIN,
            Period::H4 => 240 * MIN,
            Period::D1 => DAY,
            Period::W1 => 7 * DAY,
            Period::Mo1 => 30 * DAY,
            Period::Mo3 => 91 * DAY,
        })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| DomainError::InvalidPeriod(s.to_string()))
    }
}

impl TryFrom<String> for Period {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        p.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_every_period() {
        for p in Period::ALL {
            assert_eq!(p.as_str().parse::<Period>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
    }

    #[test]
    fn minute_and_month_differ() {
        assert_eq!("1m".parse::<Period>().unwrap(), Period::M1);
        assert_eq!("1M".parse::<Period>().unwrap(), Period::Mo1);
        assert!(Period::M1.nominal_duration() < Period::Mo1.nominal_duration());
        assert!("1D".parse::<Period>().is_err());
        assert!("".parse::<Period>().is_err());
    }

    #[test]
    fn durations_increase() {
        for w in Period::ALL.windows(2) {
            assert!(w[0].nominal_duration() < w[1].nominal_duration());
        }
    }
}
