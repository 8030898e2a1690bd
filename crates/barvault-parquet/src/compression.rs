use std::fmt;
use std::str::FromStr;

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use thiserror::Error;

/// The page compression of written files. LZ4 is the default: on bar data it gives files
/// as small as snappy's (the seed's) and decodes faster, which is most of what a nightly
/// update spends on the Parquet copy; pyarrow, polars, DuckDB and parquet-java ≥ 1.13
/// read it. Snappy remains for readers older than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ParquetCompression {
    Snappy,
    /// Zstandard at its default level: smaller files, somewhat slower writes.
    Zstd,
    /// LZ4 without Hadoop framing (`LZ4_RAW`), the variant current readers agree on.
    #[default]
    Lz4,
    /// Gzip at its default level: the most portable, the slowest.
    Gzip,
    None,
}

impl ParquetCompression {
    pub const ALL: [ParquetCompression; 5] = [
        ParquetCompression::Snappy,
        ParquetCompression::Zstd,
        ParquetCompression::Lz4,
        ParquetCompression::Gzip,
        ParquetCompression::None,
    ];

    /// The configuration spelling: `snappy`, `zstd`, `lz4`, `gzip` or `none`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParquetCompression::Snappy => "snappy",
            ParquetCompression::Zstd => "zstd",
            ParquetCompression::Lz4 => "lz4",
            ParquetCompression::Gzip => "gzip",
            ParquetCompression::None => "none",
        }
    }

    pub(crate) fn to_parquet(self) -> Compression {
        match self {
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            ParquetCompression::None => Compression::UNCOMPRESSED,
        }
    }
}

impl fmt::Display for ParquetCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compression name that is not one of `snappy`, `zstd`, `lz4`, `gzip`, `none`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown parquet compression {0:?} (expected snappy, zstd, lz4, gzip or none)")]
pub struct UnknownCompression(pub String);

impl FromStr for ParquetCompression {
    type Err = UnknownCompression;

    /// Case-insensitive; `uncompressed` is accepted for `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "snappy" => Ok(ParquetCompression::Snappy),
            "zstd" => Ok(ParquetCompression::Zstd),
            "lz4" => Ok(ParquetCompression::Lz4),
            "gzip" => Ok(ParquetCompression::Gzip),
            "none" | "uncompressed" => Ok(ParquetCompression::None),
            _ => Err(UnknownCompression(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in ParquetCompression::ALL {
            assert_eq!(c.to_string().parse::<ParquetCompression>().unwrap(), c);
        }
        assert_eq!("ZSTD".parse::<ParquetCompression>().unwrap(), ParquetCompression::Zstd);
        assert_eq!("uncompressed".parse::<ParquetCompression>().unwrap(), ParquetCompression::None);
        assert_eq!(ParquetCompression::default(), ParquetCompression::Lz4);
        let err = "brotli".parse::<ParquetCompression>().unwrap_err();
        assert!(err.to_string().contains("brotli"), "{err}");
    }
}
