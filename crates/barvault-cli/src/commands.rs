//! One function per subcommand: build the request, call the application crate, print.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use barvault::{
    ConfigSources, ExportFormat, FileImport, HealthStatus, ImportLimits, ImportOptions, Instrument, InstrumentKind,
    LoadedConfig, OpContext, Period, Scope, SeriesKey, StorageConfig, StorageError, StorageFactory, TimeRange,
    ValidationPolicy, Vault, WriteMode,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::Instrument as _;

use crate::exit::{self, UsageError};
use crate::{
    CleanupArgs, Cli, Command, ExportArgs, FormatArg, ImportArgs, InfoArgs, JsonArg, KindArg, ListArgs, OnInvalid,
    RecoverArgs, ScopeArgs, SeriesArgs, VerifyArgs,
};

/// Prints a line on standard output. A closed pipe (`barvault list | head -1`) is not an
/// error worth a message, so write failures are ignored rather than panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Runs the command; `Ok` carries the exit code of a command that ran to the end.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let verbose = cli.verbose > 0;
    let loaded = load_config(&cli)?;
    if let Command::Config(args) = &cli.command {
        return show_config(&loaded, args);
    }
    let ctx = OpContext::with_correlation_id(cli.correlation_id.as_deref());
    let runtime = crate::process::runtime().context("cannot start the async runtime")?;
    let span =
        tracing::info_span!("barvault", command = command_name(&cli.command), correlation_id = %ctx.correlation_id());
    let config = loaded.config;
    runtime.block_on(
        async move {
            match cli.command {
                Command::Import(args) => import(&config, args, verbose, &ctx).await,
                Command::Export(args) => export(&config, args, &ctx).await,
                Command::Info(args) => info(&config, args, &ctx).await,
                Command::List(args) => list(&config, args, &ctx).await,
                Command::Verify(args) => verify(&config, args).await,
                Command::Recover(args) => recover(&config, args).await,
                Command::Health(args) => health(&config, args).await,
                Command::Cleanup(args) => cleanup(&config, args, &ctx).await,
                Command::Config(_) => Ok(exit::OK),
            }
        }
        .instrument(span),
    )
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Import(_) => "import",
        Command::Export(_) => "export",
        Command::Info(_) => "info",
        Command::List(_) => "list",
        Command::Verify(_) => "verify",
        Command::Recover(_) => "recover",
        Command::Health(_) => "health",
        Command::Cleanup(_) => "cleanup",
        Command::Config(_) => "config",
    }
}

/// defaults < config file < `BARVAULT_*` environment < `--data-dir`.
fn load_config(cli: &Cli) -> anyhow::Result<LoadedConfig> {
    let mut overrides = Vec::new();
    if let Some(dir) = &cli.data_dir {
        let text = dir.to_str().ok_or_else(|| UsageError(format!("--data-dir {}: not valid UTF-8", dir.display())))?;
        overrides.push(("output_directory".to_string(), text.to_string()));
    }
    let sources = ConfigSources { file: cli.config.clone(), working_dir: None, overrides };
    Ok(StorageConfig::load(&sources)?)
}

fn show_config(loaded: &LoadedConfig, args: &JsonArg) -> anyhow::Result<u8> {
    let entries = loaded.entries();
    if args.json {
        let mut obj = serde_json::Map::new();
        for (field, value, origin) in entries {
            obj.insert(
                field.to_string(),
                serde_json::json!({ "value": value, "origin": origin, "from": origin.to_string() }),
            );
        }
        let store: serde_json::Map<String, serde_json::Value> = loaded
            .object_store_entries()
            .into_iter()
            .map(|(key, value, origin)| {
                let from = origin.map(ToString::to_string);
                (key.to_string(), serde_json::json!({ "value": value, "origin": origin, "from": from }))
            })
            .collect();
        obj.insert("object_store".to_string(), serde_json::Value::Object(store));
        say!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        let store = loaded.object_store_entries();
        let width = entries.iter().map(|(f, v, _)| f.len() + v.len() + 3);
        let width = width.chain(store.iter().map(|(k, v, _)| k.len() + v.len() + 16)).max().unwrap_or(0);
        for (field, value, origin) in entries {
            let kv = format!("{field} = {value}");
            say!("{kv:width$}  # {origin}");
        }
        for (key, value, origin) in store {
            let kv = format!("object_store.{key} = {value}");
            say!("{kv:width$}  # {}", origin.map_or_else(|| "default".to_string(), ToString::to_string));
        }
    }
    Ok(exit::OK)
}

/// The store, which must already exist (only `import` creates one): a mistyped
/// `--data-dir` must not silently create an empty store and report it clean.
async fn open_existing(config: &StorageConfig) -> anyhow::Result<Vault> {
    if !StorageFactory::store_exists(config).await? {
        return Err(anyhow!("{} (import into it first, or pass --data-dir)", missing_store(config)));
    }
    Ok(StorageFactory::open(config)?)
}

/// Why there is no store where `config` points.
fn missing_store(config: &StorageConfig) -> String {
    match config.bucket() {
        Some(url) => format!("no store at {url}: nothing is stored under that prefix"),
        None => format!("no store at {}: the directory does not exist", config.output_directory.display()),
    }
}

fn series_key(kind: KindArg, symbol: &str, period: Period) -> anyhow::Result<SeriesKey> {
    let instrument =
        Instrument::new(kind.into(), symbol).map_err(|e| UsageError(format!("--symbol {symbol:?}: {e}")))?;
    Ok(SeriesKey::new(instrument, period))
}

impl SeriesArgs {
    fn key(&self) -> anyhow::Result<SeriesKey> {
        series_key(self.kind, &self.symbol, self.period)
    }
}

impl ScopeArgs {
    fn scope(&self) -> anyhow::Result<Scope> {
        if self.all {
            return Ok(Scope::All);
        }
        match (self.kind, &self.symbol, self.period) {
            (Some(k), Some(s), Some(p)) => Ok(Scope::Series(series_key(k, s, p)?)),
            _ => Err(UsageError("give --all, or --type, --symbol and --period".into()).into()),
        }
    }
}

fn json_text<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

// ---------------------------------------------------------------------------------------
// import

/// The files named on the command line; a directory stands for the files directly inside
/// it (not hidden, sorted by name).
fn expand_inputs(inputs: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, anyhow::Error)>> {
    let mut out = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            out.push(Ok(input.clone()));
            continue;
        }
        let entries = match std::fs::read_dir(input) {
            Ok(e) => e,
            Err(e) => {
                out.push(Err((input.clone(), anyhow!("{}: cannot list directory: {e}", input.display()))));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(Ok));
    }
    out
}

/// The error of one file as `file[:line]: reason`: storage errors about the file already
/// start with its path; anything else gets it in front.
fn file_error(file: &Path, err: &anyhow::Error, verbose: bool) -> String {
    let msg = exit::message(err, verbose);
    let shown = file.display().to_string();
    if msg.contains(&shown) { msg } else { format!("{shown}: {msg}") }
}

fn import_line(r: &FileImport) -> String {
    let mut line = format!(
        "{}: {}: read {}, added {}, replaced {}, unchanged {}",
        r.file.display(),
        r.series,
        r.rows_read,
        r.added,
        r.replaced,
        r.unchanged
    );
    if r.dropped_invalid > 0 {
        line.push_str(&format!(", dropped {}", r.dropped_invalid));
    }
    line.push_str(&format!(" ({} rows stored{})", r.rows_stored, if r.written { "" } else { ", nothing written" }));
    line
}

fn progress(files: usize) -> (ProgressBar, Option<tokio::task::JoinHandle<()>>) {
    let pb = ProgressBar::with_draw_target(Some(files as u64), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}") {
        pb.set_style(style);
    }
    if !std::io::stderr().is_terminal() {
        return (pb, None);
    }
    let show = |pb: &ProgressBar| {
        pb.set_draw_target(ProgressDrawTarget::stderr());
        pb.enable_steady_tick(Duration::from_millis(120));
    };
    if files > 1 {
        show(&pb);
        return (pb, None);
    }
    // One file: show progress only if it takes more than a second.
    let late = pb.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !late.is_finished() {
            show(&late);
        }
    });
    (pb, Some(timer))
}

async fn import(config: &StorageConfig, args: ImportArgs, verbose: bool, ctx: &OpContext) -> anyhow::Result<u8> {
    let kind: InstrumentKind = args.kind.into();
    if let Some(symbol) = &args.symbol {
        series_key(args.kind, symbol, args.period)?;
    }
    let options = ImportOptions {
        validation: match args.on_invalid {
            Some(OnInvalid::Reject) => ValidationPolicy::Strict,
            Some(OnInvalid::Drop) => ValidationPolicy::Drop,
            None => config.validation,
        },
        mode: if args.replace { WriteMode::Replace } else { WriteMode::Merge },
        policy: config.merge_policy,
    };
    let vault = StorageFactory::open(config)?;
    let inputs = expand_inputs(&args.files);
    if inputs.is_empty() {
        return Err(UsageError("no files to import (the directories given are empty)".into()).into());
    }
    let (pb, timer) = progress(inputs.len());
    let mut done: Vec<FileImport> = Vec::new();
    let mut failed: Vec<(PathBuf, Option<u8>)> = Vec::new();
    let mut jobs = Vec::new();
    for input in inputs {
        let series = input.and_then(|file| {
            Vault::series_for_file(&file, kind, args.symbol.as_deref(), args.period)
                .map(|series| (file.clone(), series))
                .map_err(|e| (file, anyhow::Error::new(e)))
        });
        match series {
            Ok(job) => jobs.push(job),
            Err((path, err)) => {
                pb.suspend(|| eprintln!("error: {}", file_error(&path, &err, verbose)));
                failed.push((path, None));
                pb.inc(1);
            }
        }
    }
    vault
        .import_many(jobs, options, ImportLimits::default(), ctx, |file, result| {
            pb.set_message(file.display().to_string());
            match result {
                Ok(r) => {
                    pb.suspend(|| {
                        say!("{}", import_line(&r));
                        if let Some(w) = &r.warning {
                            eprintln!("warning: {}: {w} (run `barvault recover` to rebuild it)", r.file.display());
                        }
                    });
                    done.push(r);
                }
                Err(e) => {
                    let code = exit::storage_code(&e);
                    let err = anyhow::Error::new(e);
                    pb.suspend(|| eprintln!("error: {}", file_error(file, &err, verbose)));
                    failed.push((file.to_path_buf(), Some(code)));
                }
            }
            pb.inc(1);
        })
        .await;
    pb.finish_and_clear();
    if let Some(t) = timer {
        t.abort();
    }
    let sum = |f: fn(&FileImport) -> usize| done.iter().map(f).sum::<usize>();
    let mut total = format!(
        "total: {} file(s) imported, {} failed: read {}, added {}, replaced {}, unchanged {}",
        done.len(),
        failed.len(),
        sum(|r| r.rows_read),
        sum(|r| r.added),
        sum(|r| r.replaced),
        sum(|r| r.unchanged),
    );
    let dropped = sum(|r| r.dropped_invalid);
    if dropped > 0 {
        total.push_str(&format!(", dropped {dropped}"));
    }
    say!("{total}");
    Ok(if failed.is_empty() {
        exit::OK
    } else if failed.iter().all(|(_, c)| *c == Some(exit::LOCKED)) {
        // Only locks stood in the way: running the same command again later is the fix.
        exit::LOCKED
    } else {
        exit::FAILURE
    })
}

// ---------------------------------------------------------------------------------------
// export, info, list

async fn export(config: &StorageConfig, args: ExportArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let series = args.series.key()?;
    let range = match (args.from, args.to) {
        (None, None) => None,
        (from, to) => Some(TimeRange::new(from, to).map_err(|_| UsageError("--from is later than --to".into()))?),
    };
    let format = match args.format {
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Parquet => ExportFormat::Parquet,
        FormatArg::Json => ExportFormat::Json,
    };
    let out = args.output.filter(|p| p.as_os_str() != "-");
    let vault = open_existing(config).await?;
    match vault.export(&series, range, format, out.as_deref(), ctx).await {
        Ok(rows) => {
            match &out {
                Some(path) => say!("exported {rows} rows of {series} to {}", path.display()),
                None => tracing::info!(rows, "exported to standard output"),
            }
            Ok(exit::OK)
        }
        // The reader went away (`| head`): not an error of ours.
        Err(StorageError::Io { source, .. }) if out.is_none() && source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(exit::OK)
        }
        Err(e) => Err(e.into()),
    }
}

fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

async fn info(config: &StorageConfig, args: InfoArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let series = args.series.key()?;
    let vault = open_existing(config).await?;
    let info =
        vault.info(&series, ctx).await?.ok_or_else(|| StorageError::NotFound { what: format!("series {series}") })?;
    if args.json {
        say!("{}", json_text(&info)?);
        return Ok(exit::OK);
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    say!("series:      {}", info.series);
    say!("rows:        {}", info.rows);
    say!("first:       {}", dash(&info.first));
    say!("last:        {}", dash(&info.last));
    say!("columns:     {}", info.columns.join(", "));
    let newest = info.files.iter().filter_map(|f| f.record.as_ref()).max_by_key(|r| r.generation);
    if let Some(r) = newest {
        say!("generation:  {}", r.generation);
        say!("last update: {}", r.last_updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    for f in &info.files {
        say!("{}:", f.format);
        say!("  path:       {}", f.path);
        say!("  size:       {}", f.size.map_or_else(|| "missing".to_string(), size_text));
        match &f.record {
            Some(r) => {
                say!("  md5:        {}", if r.checksum.is_empty() { "-" } else { &r.checksum });
                say!("  generation: {}", r.generation);
                say!("  rows:       {}", r.row_count);
                say!("  updated:    {}", r.last_updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            None => say!("  metadata:   none (run `barvault verify`)"),
        }
    }
    Ok(exit::OK)
}

async fn list(config: &StorageConfig, args: ListArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let vault = open_existing(config).await?;
    let all = vault.list(args.kind.map(Into::into), args.period, ctx).await?;
    if args.json {
        say!("{}", json_text(&all)?);
        return Ok(exit::OK);
    }
    if all.is_empty() {
        say!("no series stored in {}", vault.base().display());
        return Ok(exit::OK);
    }
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|s| {
            [
                s.instrument_type.to_string(),
                s.symbol.clone(),
                s.period.to_string(),
                s.rows.to_string(),
                s.first.clone().unwrap_or_else(|| "-".into()),
                s.last.clone().unwrap_or_else(|| "-".into()),
                s.formats.join(","),
            ]
        })
        .collect();
    let header = ["TYPE", "SYMBOL", "PERIOD", "ROWS", "FIRST", "LAST", "FORMATS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 3 { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        say!("{}", cells.join("  ").trim_end());
    }
    Ok(exit::OK)
}

// ---------------------------------------------------------------------------------------
// verify, recover, health, cleanup

fn kind_name<T: serde::Serialize>(kind: &T) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

async fn verify(config: &StorageConfig, args: VerifyArgs) -> anyhow::Result<u8> {
    let scope = args.scope.scope()?;
    let vault = open_existing(config).await?;
    let report = vault.verify(scope, args.deep).await?;
    if args.json {
        say!("{}", json_text(&report)?);
    } else {
        let summary = format!(
            "checked {} series, {} files, {}",
            report.series_checked,
            report.files_checked,
            size_text(report.bytes_checked)
        );
        if report.is_clean() {
            say!("{summary}: clean");
        } else {
            say!("{summary}: {} problem(s)", report.issues.len());
            for i in &report.issues {
                say!("  {}  {}  {}", kind_name(&i.kind), i.path.display(), i.detail);
            }
            say!("run `barvault recover` to repair");
        }
    }
    Ok(if report.is_clean() { exit::OK } else { exit::FAILURE })
}

async fn recover(config: &StorageConfig, args: RecoverArgs) -> anyhow::Result<u8> {
    let scope = args.scope.scope()?;
    let vault = open_existing(config).await?;
    let report = vault.recover(scope).await?;
    if args.json {
        say!("{}", json_text(&report)?);
    } else {
        if report.actions.is_empty() && report.unrecoverable.is_empty() {
            say!("nothing to repair");
        }
        for a in &report.actions {
            say!("{}: {}", a.path.display(), a.action);
        }
        for (series, reason) in &report.unrecoverable {
            say!("unrecoverable: {series}: {reason}");
        }
    }
    Ok(if report.unrecoverable.is_empty() { exit::OK } else { exit::FAILURE })
}

async fn health(config: &StorageConfig, args: JsonArg) -> anyhow::Result<u8> {
    if !StorageFactory::store_exists(config).await? {
        // A probe must not create the store it checks; a missing store is an error status.
        let msg = missing_store(config);
        if args.json {
            say!("{}", json_text(&serde_json::json!({ "overall_status": "error", "issues": [msg] }))?);
        } else {
            say!("status: error");
            say!("  {msg}");
        }
        return Ok(exit::USAGE);
    }
    let vault = StorageFactory::open(config)?;
    let report = vault.check_health().await?;
    if args.json {
        say!("{}", json_text(&report)?);
    } else {
        say!("status:      {}", kind_name(&report.overall_status));
        for i in &report.issues {
            say!("  {i}");
        }
        if let Some(d) = &report.disk_usage {
            say!(
                "disk:        {:.1} GB free of {:.1} GB ({:.0}% used)",
                d.available_gb,
                d.total_gb,
                d.usage_percentage
            );
        }
        say!("writable:    {}", if report.write_permission { "yes" } else { "no" });
        say!(
            "series:      {} ({} files: {} csv, {} parquet)",
            report.series,
            report.total_files,
            report.csv_files,
            report.parquet_files
        );
        say!("backup:      {}", report.backup_status);
        for line in report.consistency_issues.iter().chain(&report.large_files).chain(&report.stale_temp_files) {
            say!("  {line}");
        }
    }
    Ok(match report.overall_status {
        HealthStatus::Healthy => exit::OK,
        HealthStatus::Warning => exit::FAILURE,
        HealthStatus::Error => exit::USAGE,
    })
}

async fn cleanup(config: &StorageConfig, args: CleanupArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let vault = open_existing(config).await?;
    let report = vault.cleanup(args.dry_run, args.force, ctx).await?;
    if args.json {
        say!("{}", json_text(&report)?);
        return Ok(exit::OK);
    }
    let plan = &report.plan;
    let verb = if report.dry_run { "would remove" } else { "removed" };
    say!(
        "retention {} days: bars before {} go{}",
        config.retention_days,
        plan.cutoff.as_deref().unwrap_or("-"),
        if report.dry_run { " (dry run: nothing changed)" } else { "" }
    );
    if plan.series.is_empty() && plan.temp_files.is_empty() && plan.backups.is_empty() {
        say!("nothing to clean up");
    }
    for t in &plan.series {
        say!("{}: {verb} {} rows, {} kept", t.series, t.rows_removed, t.rows_kept);
    }
    for p in &plan.temp_files {
        say!("{}: {verb} (old temp file)", p.display());
    }
    for p in &plan.backups {
        say!("{}: {verb} (old backup)", p.display());
    }
    Ok(exit::OK)
}
