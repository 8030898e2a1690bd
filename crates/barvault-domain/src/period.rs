use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// A bar period. `1m` (one minute) and `1M` (one month) are different periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Period {
    S1,
    S5,
    S15,
    S30,
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

const SEC: i64 = 1_000_000_000;
const DAY_SECS: u64 = 86_400;

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 17] = [
        Period::S1,
        Period::S5,
        Period::S15,
        Period::S30,
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
            Period::S1 => "1s",
            Period::S5 => "5s",
            Period::S15 => "15s",
            Period::S30 => "30s",
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
        Duration::from_secs(match self {
            Period::S1 => 1,
            Period::S5 => 5,
            Period::S15 => 15,
            Period::S30 => 30,
            Period::M1 => MIN,
            Period::M2 => 2 * MIN,
            Period::M5 => 5 * MIN,
            Period::M10 => 10 * MIN,
            Period::M15 => 15 * MIN,
            Period::M20 => 20 * MIN,
            Period::M30 => 30 * MIN,
            Period::H1 => 60 * MIN,
            Period::H4 => 240 * MIN,
            Period::D1 => DAY_SECS,
            Period::W1 => 7 * DAY_SECS,
            Period::Mo1 => 30 * DAY_SECS,
            Period::Mo3 => 91 * DAY_SECS,
        })
    }

    /// Whether bars are shorter than a day (seconds to four hours). Every intraday period
    /// divides a day, so its grid is the same in every day.
    pub const fn is_intraday(self) -> bool {
        self.nominal_duration().as_secs() < DAY_SECS
    }

    /// The length of one intraday bar in nanoseconds; `None` for a day and longer, whose
    /// bars are calendar days, weeks, months or quarters.
    pub const fn intraday_nanos(self) -> Option<i64> {
        if self.is_intraday() { Some(self.nominal_duration().as_secs() as i64 * SEC) } else { None }
    }

    /// A period as people write it: the canonical spelling (`1m`, `1h`, `1d`, `1W`, `1M`),
    /// any unambiguous other (`1D`, `1H`, `1w`, `5S`, `1min`, `1hour`, `1wk`, `1mo`, `1q`),
    /// an equal length in smaller units (`60m` is `1h`, `24h` is `1d`, `7d` is `1W`,
    /// `3M` is a quarter) or a word (`daily`, `weekly`, `monthly`, `quarterly`, `hourly`).
    /// Only a bare `m` / `M` is case-sensitive: `1m` is a minute, `1M` a month.
    pub fn parse_lenient(text: &str) -> Result<Period, DomainError> {
        let s = text.trim();
        if let Ok(p) = s.parse::<Period>() {
            return Ok(p);
        }
        let unknown = || DomainError::InvalidPeriod(text.to_string());
        let lower = s.to_ascii_lowercase();
        let word = match lower.as_str() {
            "daily" | "day" => Some(Period::D1),
            "weekly" | "week" => Some(Period::W1),
            "monthly" | "month" => Some(Period::Mo1),
            "quarterly" | "quarter" => Some(Period::Mo3),
            "hourly" | "hour" => Some(Period::H1),
            "minute" | "minutely" => Some(Period::M1),
            _ => None,
        };
        if let Some(p) = word {
            return Ok(p);
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (count, unit) = s.split_at(digits);
        let count: u64 = if count.is_empty() { 1 } else { count.parse().map_err(|_| unknown())? };
        let unit = unit.trim();
        let secs = |n: u64| Self::of_seconds(count.checked_mul(n).ok_or_else(unknown)?).ok_or_else(unknown);
        match unit {
            // The one case-sensitive spelling.
            "m" => return secs(60),
            "M" => return Self::of_months(count).ok_or_else(unknown),
            _ => {}
        }
        match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => secs(1),
            "min" | "mins" | "minute" | "minutes" => secs(60),
            "h" | "hr" | "hrs" | "hour" | "hours" => secs(3600),
            "d" | "day" | "days" => match count {
                7 => Ok(Period::W1),
                _ => secs(DAY_SECS),
            },
            "w" | "wk" | "wks" | "week" | "weeks" if count == 1 => Ok(Period::W1),
            "mo" | "mon" | "mth" | "month" | "months" => Self::of_months(count).ok_or_else(unknown),
            "q" | "quarter" | "quarters" if count == 1 => Ok(Period::Mo3),
            _ => Err(unknown()),
        }
    }

    /// The intraday period (or the day) exactly `secs` seconds long.
    fn of_seconds(secs: u64) -> Option<Period> {
        Period::ALL
            .into_iter()
            .find(|p| (p.is_intraday() || *p == Period::D1) && p.nominal_duration().as_secs() == secs)
    }

    fn of_months(months: u64) -> Option<Period> {
        match months {
            1 => Some(Period::Mo1),
            3 => Some(Period::Mo3),
            _ => None,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = DomainError;
    /// The canonical spelling only (what directory names and records hold); see
    /// [`Period::parse_lenient`] for what people type.
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
            assert_eq!(Period::parse_lenient(p.as_str()).unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
    }

    #[test]
    fn minute_and_month_differ() {
        assert_eq!("1m".parse::<Period>().unwrap(), Period::M1);
        assert_eq!("1M".parse::<Period>().unwrap(), Period::Mo1);
        assert!(Period::M1.nominal_duration() < Period::Mo1.nominal_duration());
        assert!("1D".parse::<Period>().is_err(), "the strict parse takes canonical names only");
        assert!("".parse::<Period>().is_err());
    }

    #[test]
    fn lenient_spellings_name_one_period() {
        let cases = [
            ("1D", Period::D1),
            ("1d", Period::D1),
            (" daily ", Period::D1),
            ("Daily", Period::D1),
            ("1day", Period::D1),
            ("24h", Period::D1),
            ("1440m", Period::D1),
            ("1H", Period::H1),
            ("60m", Period::H1),
            ("60min", Period::H1),
            ("hourly", Period::H1),
            ("3600s", Period::H1),
            ("240m", Period::H4),
            ("4H", Period::H4),
            ("1w", Period::W1),
            ("1W", Period::W1),
            ("1wk", Period::W1),
            ("7d", Period::W1),
            ("weekly", Period::W1),
            ("1M", Period::Mo1),
            ("1mo", Period::Mo1),
            ("1MO", Period::Mo1),
            ("monthly", Period::Mo1),
            ("3M", Period::Mo3),
            ("3mo", Period::Mo3),
            ("1q", Period::Mo3),
            ("quarterly", Period::Mo3),
            ("1m", Period::M1),
            ("1min", Period::M1),
            ("1Min", Period::M1),
            ("60s", Period::M1),
            ("5m", Period::M5),
            ("5MIN", Period::M5),
            ("300s", Period::M5),
            ("5s", Period::S5),
            ("5S", Period::S5),
            ("30sec", Period::S30),
        ];
        for (text, p) in cases {
            assert_eq!(Period::parse_lenient(text), Ok(p), "{text}");
        }
        for bad in ["", "2h", "7m", "2M", "1y", "1x", "m1", "2w", "minutes5", "99999999999999999999m", "-1d"] {
            assert!(Period::parse_lenient(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_increase_and_intraday_periods_divide_a_day() {
        for w in Period::ALL.windows(2) {
            assert!(w[0].nominal_duration() < w[1].nominal_duration());
        }
        for p in Period::ALL {
            match p.intraday_nanos() {
                Some(n) => assert_eq!((86_400 * SEC) % n, 0, "{p}"),
                None => assert!(p.nominal_duration().as_secs() >= DAY_SECS, "{p}"),
            }
        }
        assert_eq!(Period::S1.intraday_nanos(), Some(SEC));
        assert_eq!(Period::D1.intraday_nanos(), None);
    }
}
