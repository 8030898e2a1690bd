//! `barvault`: the operator command line of the barvault bar store.
//!
//! A thin shell: parse flags, load the configuration, call the application crate, print,
//! and map the outcome to an exit code (see [`exit`]). No storage logic lives here.

/// Prints a line on standard error. `eprintln!` panics when the write fails (EIO on a dying
/// terminal, a closed or full pipe), which would turn an ordinary error into exit 101 with a
/// backtrace; a message nobody can read is dropped instead and the exit code stays the
/// command's own (RELIABILITY.md, "Standard output and error").
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod commands;
mod exit;
mod logging;
mod process;

use std::path::PathBuf;
use std::process::ExitCode;

use barvault::{InstrumentKind, Period, timearg};
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
    /// Merge CSV or Parquet files (or standard input, gzip or zstd) into the store (keep-last on repeated timestamps).
    #[command(after_help = exit::HELP)]
    Import(ImportArgs),
    /// Write the stored bars of one series as CSV, Parquet or JSON lines.
    #[command(after_help = exit::HELP)]
    Export(ExportArgs),
    /// Show rows, range, columns, files, sizes, checksums and generation of one series.
    #[command(after_help = exit::HELP)]
    Info(InfoArgs),
    /// Delete one series: its data, backups, metadata records, lock, spare and temp files.
    #[command(after_help = exit::HELP)]
    Delete(DeleteArgs),
    /// Store one series under another symbol, type or period (for a series imported under the wrong name).
    #[command(after_help = exit::HELP)]
    Rename(RenameArgs),
    /// List every stored series with its rows and time range.
    #[command(after_help = exit::HELP)]
    List(ListArgs),
    /// Check stored files against their checksums and each other; writes no data or metadata (exit 1 when problems are found).
    ///
    /// It writes no data file, backup or metadata record. A series whose first look finds
    /// damage (which a write in progress also shows) is looked at again under its series
    /// lock, which may create that series' lock file (an empty file, and its directory):
    /// the only change verify makes to a store. On object storage it takes no lock and
    /// changes nothing.
    #[command(after_help = exit::HELP)]
    Verify(VerifyArgs),
    /// Repair damaged or missing copies from the best evidence left and remove stale temp and lock files.
    #[command(after_help = exit::HELP)]
    Recover(RecoverArgs),
    /// Check disk space, permissions, consistency and file sizes (exit 0 healthy, 1 warning, 2 error).
    #[command(after_help = exit::HELP)]
    Health(JsonArg),
    /// Apply the retention policy, if retention_days is set: trim old bars, delete old backups and temp files.
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
    Period::parse_lenient(s).map_err(|_| {
        let all: Vec<&str> = Period::ALL.iter().map(|p| p.as_str()).collect();
        format!(
            "unknown period {s:?}; one of {} (1m is a minute, 1M a month; also 1D, 1H, 1w, 60m, daily, weekly, \
             monthly, quarterly)",
            all.join(", ")
        )
    })
}

/// The help of every `--period`.
const PERIOD_HELP: &str = "Bar period: 1s 5s 15s 30s 1m 2m 5m 10m 15m 20m 30m 1h 4h 1d 1W 1M 3M (1m is a minute, 1M a month); \
                           1D, 1H, 1w, 60m, daily, weekly, monthly and quarterly are understood too";

/// What to do with rows that break a bar rule (high below low, negative volume, a bar off the series' time grid, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnInvalid {
    /// Refuse the whole file, naming the offending rows by line.
    Reject,
    /// Leave the offending rows out and name them in a warning.
    Drop,
    /// Store every row as it is (validation off), e.g. ticks kept in a minute series.
    Keep,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Instrument type of the series.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: KindArg,
    /// Symbol of the series; without it each file's name gives it: without extension, compression suffix and a trailing period suffix (NVDA.csv, NVDA-1d.csv and NVDA_1d.csv.gz are NVDA for --period 1d). Required for standard input.
    #[arg(long)]
    symbol: Option<String>,
    #[arg(long, value_parser = parse_period, help = PERIOD_HELP)]
    period: Period,
    /// Rows that break a rule or sit off the series' time grid: refuse the file (reject), import it without them (drop), or store them anyway (keep); default: the configured validation.
    #[arg(long, value_enum, value_name = "POLICY")]
    on_invalid: Option<OnInvalid>,
    /// The IANA time zone of naive timestamps (America/New_York, Europe/Berlin); default UTC. Refused for input whose timestamps carry offsets.
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// Replace the stored series with the file's bars instead of merging into it (reports the stored rows it removes).
    #[arg(long)]
    replace: bool,
    /// Files to import: CSV in common dialects or Parquet, plain or compressed (gzip, zstd); `-` reads standard input; a directory imports every file in it.
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
    #[arg(long, value_parser = parse_period, help = PERIOD_HELP)]
    period: Period,
}

/// One series, whose period may be left out when the symbol is stored at one period only.
#[derive(Debug, Args)]
pub struct SeriesLooseArgs {
    /// Instrument type of the series.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: KindArg,
    /// Symbol of the series (case-insensitive; stored upper-case).
    #[arg(long)]
    symbol: String,
    /// Bar period (see import --help); may be left out when the symbol is stored at one period only.
    #[arg(long, value_parser = parse_period)]
    period: Option<Period>,
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The store's CSV format (UTC timestamps, shortest round-trip numbers).
    Csv,
    /// Parquet with a UTC nanosecond timestamp column.
    Parquet,
    /// One JSON object per line, keys in the CSV's column order.
    Json,
}

impl FormatArg {
    pub fn name(self) -> &'static str {
        match self {
            FormatArg::Csv => "csv",
            FormatArg::Parquet => "parquet",
            FormatArg::Json => "json",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    series: SeriesLooseArgs,
    /// First time to include (RFC 3339, YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", UTC; inclusive).
    #[arg(long, value_name = "TIME", value_parser = timearg::parse_from)]
    from: Option<i64>,
    /// Last time to include (same forms, inclusive; a bare date includes that whole day).
    #[arg(long, value_name = "TIME", value_parser = timearg::parse_to)]
    to: Option<i64>,
    /// Output format; default: the one -o's extension names (.csv, .parquet, .json / .jsonl / .ndjson), else csv. Parquet is not written to a terminal.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// File to write (atomically); `-` or no -o writes to standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    series: SeriesLooseArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only series of this instrument type.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: Option<KindArg>,
    /// Only series of this period (see import --help for the spellings).
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
    /// Also forget a series whose every copy is gone (no data file and no backup left): remove its metadata records and lock files.
    #[arg(long)]
    forget_missing: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    series: SeriesArgs,
    /// List what would be deleted and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    #[command(flatten)]
    series: SeriesArgs,
    /// The new symbol (default: the same).
    #[arg(long, value_name = "SYMBOL", required_unless_present_any = ["to_type", "to_period"])]
    to_symbol: Option<String>,
    /// The new instrument type (default: the same).
    #[arg(long, value_enum, value_name = "TYPE")]
    to_type: Option<KindArg>,
    /// The new period (default: the same); the bars must sit on its grid.
    #[arg(long, value_parser = parse_period, value_name = "PERIOD")]
    to_period: Option<Period>,
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
    /// Carry out a plan that removes every row of a series, or more than half of the rows stored (refused without it).
    #[arg(long)]
    confirm_removal: bool,
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
            tell!("error: {}", exit::message(&err, verbose));
            ExitCode::from(exit::code_of(&err))
        }
    }
}
