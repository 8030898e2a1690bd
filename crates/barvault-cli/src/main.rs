//! `barvault`: the operator command line of the barvault bar store.
//!
//! A thin shell: parse flags, load the configuration, call the application crate, print,
//! and map the outcome to an exit code (see [`exit`]). No storage logic lives here.

mod commands;
mod exit;
mod logging;
mod process;
mod timearg;

use std::path::PathBuf;
use std::process::ExitCode;

use barvault::{InstrumentKind, Period};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// barvault: a durable store of OHLCV market bars (CSV primary + Parquet backup, checksummed metadata).
#[derive(Debug, Parser)]
#[command(name = "barvault", version, about, after_help = exit::HELP, propagate_version = true)]
pub struct Cli {
    /// Base directory of the store, or s3://BUCKET/PREFIX for a store on object storage; overrides output_directory from the environment and the config file.
    #[arg(long, global = true, help_heading = "Global options", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Configuration file to read (TOML); without it, ./barvault.toml is read when present.
    #[arg(long, global = true, help_heading = "Global options", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Format of log lines on standard error: text, or one JSON object per line.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log more: -v shows info, -vv debug; with -v an error shows its whole cause chain.
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Log errors only (no warnings).
    #[arg(short, long, global = true, help_heading = "Global options")]
    quiet: bool,

    /// Correlation id recorded on every log line of this run; a fresh UUID when not given.
    #[arg(long, global = true, help_heading = "Global options", value_name = "ID")]
    correlation_id: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge CSV or Parquet files into the store (keep-last on repeated timestamps).
    #[command(after_help = exit::HELP)]
    Import(ImportArgs),
    /// Write the stored bars of one series as CSV, Parquet or JSON lines.
    #[command(after_help = exit::HELP)]
    Export(ExportArgs),
    /// Show rows, range, columns, files, sizes, checksums and generation of one series.
    #[command(after_help = exit::HELP)]
    Info(InfoArgs),
    /// List every stored series with its rows and time range.
    #[command(after_help = exit::HELP)]
    List(ListArgs),
    /// Check stored files against their checksums and each other; changes nothing (exit 1 when problems are found).
    #[command(after_help = exit::HELP)]
    Verify(VerifyArgs),
    /// Repair damaged or missing copies from the best evidence left and remove stale temp and lock files.
    #[command(after_help = exit::HELP)]
    Recover(RecoverArgs),
    /// Check disk space, permissions, consistency and file sizes (exit 0 healthy, 1 warning, 2 error).
    #[command(after_help = exit::HELP)]
    Health(JsonArg),
    /// Apply the retention policy (retention_days): trim old bars, delete old backups and temp files.
    #[command(after_help = exit::HELP)]
    Cleanup(CleanupArgs),
    /// Show the effective configuration and where each value came from.
    #[command(after_help = exit::HELP)]
    Config(JsonArg),
}

/// The instrument family of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Stock,
    Future,
    Forex,
}

impl From<KindArg> for InstrumentKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Stock => InstrumentKind::Stock,
            KindArg::Future => InstrumentKind::Future,
            KindArg::Forex => InstrumentKind::Forex,
        }
    }
}

fn parse_period(s: &str) -> Result<Period, String> {
    s.parse().map_err(|_| {
        let all: Vec<&str> = Period::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown period {s:?}; one of {} (1m is a minute, 1M a month)", all.join(", "))
    })
}

/// What to do with rows that break a bar rule (high below low, negative volume, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnInvalid {
    /// Refuse the whole file, naming the offending rows.
    Reject,
    /// Leave the offending rows out and report how many.
    Drop,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Instrument type of the series.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: KindArg,
    /// Symbol of the series; without it each file's name without extension is the symbol (NVDA.csv is NVDA).
    #[arg(long)]
    symbol: Option<String>,
    /// Bar period, e.g. 1m, 5m, 1h, 1d, 1W, 1M.
    #[arg(long, value_parser = parse_period)]
    period: Period,
    /// Whether a file with invalid rows is refused (reject) or imported without them (drop); default: the configured validation.
    #[arg(long, value_enum, value_name = "POLICY")]
    on_invalid: Option<OnInvalid>,
    /// Replace the stored series with the file's bars instead of merging into it.
    #[arg(long)]
    replace: bool,
    /// Files to import (CSV in common dialects, or .parquet); a directory imports every file in it.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// One series, named by type, symbol and period.
#[derive(Debug, Args)]
pub struct SeriesArgs {
    /// Instrument type of the series.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: KindArg,
    /// Symbol of the series (case-insensitive; stored upper-case).
    #[arg(long)]
    symbol: String,
    /// Bar period, e.g. 1m, 5m, 1h, 1d, 1W, 1M.
    #[arg(long, value_parser = parse_period)]
    period: Period,
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The store's CSV format (nanosecond timestamps, shortest round-trip numbers).
    Csv,
    /// Parquet with a UTC nanosecond timestamp column.
    Parquet,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    series: SeriesArgs,
    /// First time to include (RFC 3339, YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", UTC; inclusive).
    #[arg(long, value_name = "TIME", value_parser = timearg::parse_from)]
    from: Option<i64>,
    /// Last time to include (same forms, inclusive; a bare date includes that whole day).
    #[arg(long, value_name = "TIME", value_parser = timearg::parse_to)]
    to: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Csv)]
    format: FormatArg,
    /// File to write (atomically); `-` or no -o writes to standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    series: SeriesArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only series of this instrument type.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: Option<KindArg>,
    /// Only series of this period.
    #[arg(long, value_parser = parse_period)]
    period: Option<Period>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Either every series (`--all`) or one series.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Every series in the store (and the store's temp and lock files).
    #[arg(long, conflicts_with_all = ["kind", "symbol", "period"])]
    all: bool,
    /// Instrument type of the one series to cover.
    #[arg(long = "type", value_enum, value_name = "TYPE", required_unless_present = "all")]
    kind: Option<KindArg>,
    /// Symbol of the one series to cover.
    #[arg(long, required_unless_present = "all")]
    symbol: Option<String>,
    /// Period of the one series to cover.
    #[arg(long, value_parser = parse_period, required_unless_present = "all")]
    period: Option<Period>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Also parse files whose checksum matches, compare the copies row by row and check backups.
    #[arg(long)]
    deep: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Show what would be removed and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run even when cleanup_enabled is false in the configuration.
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    crate::process::tune_allocator();
    let cli = Cli::parse();
    let verbose = cli.verbose > 0;
    logging::init(cli.log_format, cli.verbose, cli.quiet);
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", exit::message(&err, verbose));
            ExitCode::from(exit::code_of(&err))
        }
    }
}
