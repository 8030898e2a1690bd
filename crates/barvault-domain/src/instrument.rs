use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::period::Period;

/// Longest symbol accepted, in bytes (all symbol characters are ASCII).
pub const MAX_SYMBOL_LEN: usize = 64;

/// Punctuation that real tickers use (`BRK.B`, `BF-B`, `^GSPC`, `EURUSD=X`, `ES_F`).
const SYMBOL_PUNCTUATION: &[u8] = b".-_^=";

/// A validated ticker symbol: safe to use as a file name on every platform.
///
/// Rules: 1..=64 characters from `A-Z 0-9 . - _ ^ =`, not starting with `.`
/// (so never `.`, `..` or a hidden file). Lower-case letters are accepted and
/// upper-cased, so `aapl` and `AAPL` are one series even on case-insensitive file
/// systems. Path separators, NUL, control characters, spaces and non-ASCII text are
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

impl Symbol {
    pub fn new(raw: &str) -> Result<Self, DomainError> {
        let invalid = |reason: &str| DomainError::InvalidSymbol { symbol: raw.to_string(), reason: reason.to_string() };
        if raw.is_empty() {
            return Err(invalid("empty"));
        }
        if raw.len() > MAX_SYMBOL_LEN {
            return Err(invalid(&format!("longer than {MAX_SYMBOL_LEN} characters")));
        }
        if raw.starts_with('.') {
            return Err(invalid("must not start with '.'"));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && SYMBOL_PUNCTUATION.contains(&(*c as u8)))))
        {
            return Err(invalid(&format!("character {c:?} is not allowed (allowed: letters, digits, . - _ ^ =)")));
        }
        Ok(Symbol(raw.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Symbol {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::new(s)
    }
}

impl TryFrom<String> for Symbol {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Symbol::new(&s)
    }
}

impl From<Symbol> for String {
    fn from(s: Symbol) -> String {
        s.0
    }
}

/// The three instrument families, each stored under its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstrumentKind {
    Stock,
    Future,
    Forex,
}

impl InstrumentKind {
    pub const ALL: [InstrumentKind; 3] = [InstrumentKind::Stock, InstrumentKind::Future, InstrumentKind::Forex];

    /// `stock`, `future` or `forex`.
    pub const fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::Stock => "stock",
            InstrumentKind::Future => "future",
            InstrumentKind::Forex => "forex",
        }
    }

    /// The directory on disk: `stocks`, `futures` or `forex`.
    pub const fn dir_name(self) -> &'static str {
        match self {
            InstrumentKind::Stock => "stocks",
            InstrumentKind::Future => "futures",
            InstrumentKind::Forex => "forex",
        }
    }

    /// The kind whose directory is `dir`.
    pub fn from_dir_name(dir: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.dir_name() == dir)
    }
}

impl fmt::Display for InstrumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstrumentKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "stock" | "stocks" => Ok(InstrumentKind::Stock),
            "future" | "futures" => Ok(InstrumentKind::Future),
            "forex" | "fx" => Ok(InstrumentKind::Forex),
            _ => Err(DomainError::InvalidKind(s.to_string())),
        }
    }
}

/// A futures contract month, rendered with the exchange month codes F G H J K M N Q U V X Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContractMonth {
    year: i32,
    month: u32,
}

const MONTH_CODES: [char; 12] = ['F', 'G', 'H', 'J', 'K', 'M', 'N', 'Q', 'U', 'V', 'X', 'Z'];

impl ContractMonth {
    pub fn new(year: i32, month: u32) -> Result<Self, DomainError> {
        let bad = |reason: &str| DomainError::InvalidContract { year, month, reason: reason.to_string() };
        if !(1..=12).contains(&month) {
            return Err(bad("month must be 1..=12"));
        }
        if !(1900..=2999).contains(&year) {
            return Err(bad("year must be 1900..=2999"));
        }
        Ok(Self { year, month })
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The month letter, `Z` for December.
    pub fn code(self) -> char {
        MONTH_CODES[(self.month - 1) as usize]
    }
}

/// A tradable instrument: its family and validated symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Instrument {
    kind: InstrumentKind,
    symbol: Symbol,
}

impl Instrument {
    /// An instrument of `kind` with an already-formed symbol (what a file name or a CLI gives).
    /// Forex symbols must be a six-letter pair.
    pub fn new(kind: InstrumentKind, symbol: &str) -> Result<Self, DomainError> {
        match kind {
            InstrumentKind::Forex => Self::forex(symbol),
            _ => Ok(Self { kind, symbol: Symbol::new(symbol)? }),
        }
    }

    pub fn stock(symbol: &str) -> Result<Self, DomainError> {
        Self::new(InstrumentKind::Stock, symbol)
    }

    /// A future: the root (`GC`) plus an optional contract month (`GC` + 2024-12 → `GCZ24`).
    pub fn future(root: &str, contract: Option<ContractMonth>) -> Result<Self, DomainError> {
        let root_sym = Symbol::new(root)?;
        let symbol = match contract {
            None => root_sym,
            Some(c) => Symbol::new(&format!("{}{}{:02}", root_sym, c.code(), c.year().rem_euclid(100)))?,
        };
        Ok(Self { kind: InstrumentKind::Future, symbol })
    }

    /// A currency pair such as `EURUSD` (also accepted as `EUR/USD` or `eur.usd`).
    pub fn forex(pair: &str) -> Result<Self, DomainError> {
        let compact: String = pair.chars().filter(|c| !matches!(c, '/' | '.')).collect();
        if compact.len() != 6 || !compact.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(DomainError::InvalidSymbol {
                symbol: pair.to_string(),
                reason: "a forex pair is two three-letter currency codes, such as EURUSD".into(),
            });
        }
        Ok(Self { kind: InstrumentKind::Forex, symbol: Symbol::new(&compact)? })
    }

    pub fn kind(&self) -> InstrumentKind {
        self.kind
    }

    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.symbol)
    }
}

/// One stored series: an instrument at one period. The unit of locking and of files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub instrument: Instrument,
    pub period: Period,
}

impl SeriesKey {
    pub fn new(instrument: Instrument, period: Period) -> Self {
        Self { instrument, period }
    }

    /// `{kind dir}/{period}/{SYMBOL}` — the relative location without extension.
    pub fn relative_stem(&self) -> String {
        format!("{}/{}/{}", self.instrument.kind().dir_name(), self.period, self.instrument.symbol())
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.instrument, self.period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_symbols_are_rejected() {
        let long = "A".repeat(65);
        for bad in ["../etc/passwd", "a/b", "a\\b", "..", ".", "", long.as_str(), "a\0b", "a b", "ä", "a\nb", ".hidden"]
        {
            assert!(Symbol::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn real_tickers_are_accepted() {
        for good in ["AAPL", "BRK.B", "BF-B", "^GSPC", "EURUSD=X", "ES_F", "a", &"A".repeat(64)] {
            assert!(Symbol::new(good).is_ok(), "{good:?} refused");
        }
        assert_eq!(Symbol::new("aapl").unwrap().as_str(), "AAPL");
    }

    #[test]
    fn futures_take_month_codes() {
        let f = Instrument::future("GC", Some(ContractMonth::new(2024, 12).unwrap())).unwrap();
        assert_eq!(f.symbol().as_str(), "GCZ24");
        let f = Instrument::future("cl", Some(ContractMonth::new(2025, 1).unwrap())).unwrap();
        assert_eq!(f.symbol().as_str(), "CLF25");
        assert_eq!(Instrument::future("GC", None).unwrap().symbol().as_str(), "GC");
        assert!(ContractMonth::new(2024, 13).is_err());
        assert!(ContractMonth::new(2024, 0).is_err());
        let codes: String = (1..=12).map(|m| ContractMonth::new(2020, m).unwrap().code()).collect();
        assert_eq!(codes, "FGHJKMNQUVXZ");
    }

    #[test]
    fn forex_is_a_pair() {
        assert_eq!(Instrument::forex("EUR/USD").unwrap().symbol().as_str(), "EURUSD");
        assert!(Instrument::forex("EURUS").is_err());
        assert!(Instrument::forex("../../x").is_err());
    }

    #[test]
    fn kinds_map_to_directories() {
        assert_eq!(InstrumentKind::Stock.dir_name(), "stocks");
        assert_eq!(InstrumentKind::Future.dir_name(), "futures");
        assert_eq!(InstrumentKind::Forex.dir_name(), "forex");
        for k in InstrumentKind::ALL {
            assert_eq!(InstrumentKind::from_dir_name(k.dir_name()), Some(k));
            assert_eq!(k.as_str().parse::<InstrumentKind>().unwrap(), k);
        }
    }
}
