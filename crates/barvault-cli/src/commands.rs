//! One function per subcommand: build the request, call the application crate, print.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use barvault::{
    CleanupOptions, ConfigSources, ExportFormat, FileImport, HealthStatus, ImportLimits, ImportOptions, InputOptions,
    Instrument, InstrumentKind, LoadedConfig, OpContext, Period, Scope, SeriesKey, StorageConfig, StorageError,
    StorageFactory, TimeRange, ValidationPolicy, Vault, WriteMode,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::Instrument as _;

use crate::exit::{self, UsageError};
use crate::{
    CleanupArgs, Cli, Command, DeleteArgs, ExportArgs, FormatArg, ImportArgs, InfoArgs, JsonArg, KindArg, ListArgs,
    OnInvalid, RecoverArgs, RenameArgs, ScopeArgs, SeriesArgs, SeriesLooseArgs, VerifyArgs,
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
    check_store_path(&loaded)?;
    let config = loaded.config;
    watch_for_interrupts();
    runtime.block_on(
        async move {
            match cli.command {
                Command::Import(args) => import(&config, args, verbose, &ctx).await,
                Command::Export(args) => export(&config, args, &ctx).await,
                Command::Info(args) => info(&config, args, &ctx).await,
                Command::Delete(args) => delete(&config, args, &ctx).await,
                Command::Rename(args) => rename(&config, args, &ctx).await,
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
        Command::Delete(_) => "delete",
        Command::Rename(_) => "rename",
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

/// On SIGINT or SIGTERM: removes the temp files of the writes in progress (the stored
/// versions are untouched: a write is published only by its final rename) and exits
/// 130 or 143, as a shell reports a process its signal stopped. The signals are awaited
/// on a thread of their own, so a command busy on the main thread (an export writing to
/// a slow pipe) still stops at once.
fn watch_for_interrupts() {
    use tokio::signal::unix::{SignalKind, signal};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = std::thread::Builder::new().name("barvault-signals".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            let _ = ready_tx.send(false);
            return;
        };
        rt.block_on(async move {
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                let _ = ready_tx.send(false);
                return;
            };
            let _ = ready_tx.send(true);
            let code = tokio::select! {
                _ = interrupt.recv() => exit::INTERRUPTED,
                _ = terminate.recv() => exit::TERMINATED,
            };
            let removed = barvault::remove_in_flight();
            tell!(
                "\ninterrupted: stopped before finishing; {} temp file(s) of unfinished writes removed, the stored data \
                 is as it was before them",
                removed.len()
            );
            std::process::exit(i32::from(code));
        });
    });
    // Wait until the handlers are installed, so that no signal falls between.
    if watcher.is_err() || !ready_rx.recv().unwrap_or(false) {
        tracing::warn!("cannot watch for SIGINT/SIGTERM; an interrupted write leaves its temp file for `recover`");
    }
}

/// A store path that exists but is a file (`--data-dir README.md`) is refused for every
/// command, with where the path came from.
fn check_store_path(loaded: &LoadedConfig) -> anyhow::Result<()> {
    let dir = &loaded.config.output_directory;
    if dir.exists() && !dir.is_dir() {
        let origin = loaded.origins.get("output_directory").map_or_else(String::new, |o| format!(" (from {o})"));
        return Err(UsageError(format!(
            "{}{origin} is a file, not a store directory: --data-dir names the directory that holds the store",
            dir.display()
        ))
        .into());
    }
    Ok(())
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

impl SeriesLooseArgs {
    /// Refuses an invalid symbol before anything is opened.
    fn check(&self) -> anyhow::Result<()> {
        series_key(self.kind, &self.symbol, self.period.unwrap_or(Period::D1)).map(|_| ())
    }

    /// The series; without `--period`, the one period the symbol is stored at.
    async fn key(&self, vault: &Vault, ctx: &OpContext) -> anyhow::Result<SeriesKey> {
        let period = match self.period {
            Some(p) => p,
            None => vault.only_period(self.kind.into(), &self.symbol, ctx).await.map_err(|e| match e {
                StorageError::InvalidInput { message, .. } => anyhow::Error::new(UsageError(message)),
                other => other.into(),
            })?,
        };
        series_key(self.kind, &self.symbol, period)
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
/// it (not hidden, sorted by name), and `-` for standard input.
fn expand_inputs(inputs: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, anyhow::Error)>> {
    let mut out = Vec::new();
    for input in inputs {
        if barvault::is_stdin(input) || !input.is_dir() {
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
    if r.duplicates > 0 {
        line.push_str(&format!(", duplicates {} (timestamps repeated in the file)", r.duplicates));
    }
    if r.dropped_invalid > 0 {
        line.push_str(&format!(", dropped {}", r.dropped_invalid));
    }
    if r.removed > 0 {
        line.push_str(&format!(", removed {} (stored rows not in the file)", r.removed));
    }
    line.push_str(&format!(" ({} rows stored{})", r.rows_stored, if r.written { "" } else { ", nothing written" }));
    line
}

/// Bytes of input read by this process's imports, for the progress bar.
static INPUT_READ: AtomicU64 = AtomicU64::new(0);

/// The progress bar of an import of `files` inputs holding `bytes` bytes (`None` when
/// unknown: standard input). It counts bytes read, so one large file moves too; it shows
/// when standard error is a terminal and there are several files or the work takes over a
/// second.
fn progress(files: usize, bytes: Option<u64>) -> (ProgressBar, Vec<tokio::task::JoinHandle<()>>) {
    let pb = ProgressBar::with_draw_target(bytes, ProgressDrawTarget::hidden());
    let template = match bytes {
        Some(_) => "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {wide_msg}",
        None => "{spinner} [{elapsed_precise}] {bytes} {wide_msg}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    if !std::io::stderr().is_terminal() {
        return (pb, Vec::new());
    }
    let ticker = pb.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        while !ticker.is_finished() {
            every.tick().await;
            ticker.set_position(INPUT_READ.load(Ordering::Relaxed));
        }
    })];
    let show = |pb: &ProgressBar| {
        pb.set_draw_target(ProgressDrawTarget::stderr());
        pb.enable_steady_tick(Duration::from_millis(120));
    };
    if files > 1 {
        show(&pb);
        return (pb, tasks);
    }
    // One file: show progress only if it takes more than a second.
    let late = pb.clone();
    tasks.push(tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !late.is_finished() {
            show(&late);
        }
    }));
    (pb, tasks)
}

/// `--symbol` with files whose names give different symbols puts them all into one
/// series, the later ones winning on equal timestamps: worth a warning that names them.
fn warn_one_symbol_for_many(symbol: &str, kind: InstrumentKind, period: Period, files: &[PathBuf]) {
    let mut by_name: Vec<(String, &Path)> = Vec::new();
    for f in files.iter().filter(|f| !barvault::is_stdin(f)) {
        let own = barvault::symbol_from_file_name(f, period)
            .and_then(|s| Instrument::new(kind, &s).ok())
            .map(|i| i.symbol().to_string());
        if let Some(own) = own {
            by_name.push((own, f));
        }
    }
    let mut names: Vec<&str> = by_name.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    names.dedup();
    if names.len() > 1 {
        let listed: Vec<String> = by_name.iter().map(|(n, f)| format!("{} ({n})", f.display())).collect();
        tell!(
            "warning: --symbol {symbol} puts {} files whose names give {} different symbols into one series (later \
             files win on equal timestamps): {}",
            by_name.len(),
            names.len(),
            listed.join(", ")
        );
    }
}

async fn import(config: &StorageConfig, args: ImportArgs, verbose: bool, ctx: &OpContext) -> anyhow::Result<u8> {
    let kind: InstrumentKind = args.kind.into();
    if let Some(symbol) = &args.symbol {
        series_key(args.kind, symbol, args.period)?;
    }
    let tz = match &args.tz {
        Some(zone) => Some(barvault::parse_zone(zone).map_err(|e| UsageError(format!("--tz: {e}")))?),
        None => None,
    };
    if args.files.iter().filter(|f| barvault::is_stdin(f)).count() > 1 {
        return Err(UsageError("standard input (-) can be given once".into()).into());
    }
    let options = ImportOptions {
        validation: match args.on_invalid {
            Some(OnInvalid::Reject) => ValidationPolicy::Strict,
            Some(OnInvalid::Drop) => ValidationPolicy::Drop,
            Some(OnInvalid::Keep) => ValidationPolicy::Off,
            None => config.validation,
        },
        mode: if args.replace { WriteMode::Replace } else { WriteMode::Merge },
        policy: config.merge_policy,
        input: InputOptions { tz, progress: Some(&INPUT_READ) },
    };
    let vault = StorageFactory::open(config)?;
    let inputs = expand_inputs(&args.files);
    if inputs.is_empty() {
        return Err(UsageError("no files to import (the directories given are empty)".into()).into());
    }
    let listed: Vec<PathBuf> = inputs.iter().filter_map(|i| i.as_ref().ok().cloned()).collect();
    if let Some(symbol) = &args.symbol {
        warn_one_symbol_for_many(symbol, kind, args.period, &listed);
    }
    let sizes: Option<u64> =
        listed.iter().map(|f| (!barvault::is_stdin(f)).then(|| std::fs::metadata(f).map_or(0, |m| m.len()))).sum();
    let (pb, tasks) = progress(inputs.len(), sizes);
    let total_files = inputs.len();
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
                pb.suspend(|| tell!("error: {}", file_error(&path, &err, verbose)));
                failed.push((path, None));
            }
        }
    }
    let names: std::collections::BTreeMap<PathBuf, String> =
        jobs.iter().map(|(f, s)| (f.clone(), s.to_string())).collect();
    vault
        .import_many(jobs, options, ImportLimits::default(), ctx, |file, result| {
            pb.set_message(format!("{}/{total_files} files: {}", done.len() + failed.len() + 1, file.display()));
            match result {
                Ok(r) => {
                    pb.suspend(|| {
                        say!("{}", import_line(&r));
                        if r.dropped_invalid > 0 {
                            let more = r.dropped_invalid.saturating_sub(r.dropped_rows.len());
                            let more = if more > 0 { format!("; … ({more} more)") } else { String::new() };
                            tell!(
                                "warning: {}: dropped {} row(s) ({}): {}{more}",
                                r.file.display(),
                                r.dropped_invalid,
                                r.dropped_why,
                                r.dropped_rows.join(", ")
                            );
                        }
                        if let Some(w) = &r.warning {
                            tell!("warning: {}: {w} (run `barvault recover` to rebuild it)", r.file.display());
                        }
                    });
                    done.push(r);
                }
                Err(e) => {
                    let code = exit::storage_code(&e);
                    let err = anyhow::Error::new(e);
                    let series = names.get(file).map_or_else(String::new, |s| format!(" (into {s})"));
                    pb.suspend(|| tell!("error: {}{series}", file_error(file, &err, verbose)));
                    failed.push((file.to_path_buf(), Some(code)));
                }
            }
        })
        .await;
    pb.finish_and_clear();
    for t in tasks {
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
    for (n, what) in [
        (sum(|r| r.duplicates), "duplicates"),
        (sum(|r| r.dropped_invalid), "dropped"),
        (sum(|r| r.removed), "removed"),
    ] {
        if n > 0 {
            total.push_str(&format!(", {what} {n}"));
        }
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

/// The format an output file's extension names.
fn format_of(path: &Path) -> Option<FormatArg> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(FormatArg::Csv),
        "parquet" | "pq" => Some(FormatArg::Parquet),
        "json" | "jsonl" | "ndjson" => Some(FormatArg::Json),
        _ => None,
    }
}

async fn export(config: &StorageConfig, args: ExportArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let range = match (args.from, args.to) {
        (None, None) => None,
        (from, to) => Some(TimeRange::new(from, to).map_err(|_| UsageError("--from is later than --to".into()))?),
    };
    let out = args.output.filter(|p| p.as_os_str() != "-");
    let named = out.as_deref().and_then(format_of);
    let chosen = match (args.format, named) {
        (Some(f), Some(n)) if f != n => {
            tell!(
                "warning: writing {} as --format says, although the name {} says {}",
                f.name(),
                out.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                n.name()
            );
            f
        }
        (Some(f), _) => f,
        (None, n) => n.unwrap_or(FormatArg::Csv),
    };
    if chosen == FormatArg::Parquet && out.is_none() && std::io::stdout().is_terminal() {
        return Err(UsageError(
            "Parquet is binary and standard output is a terminal: give -o FILE.parquet, or redirect standard output"
                .into(),
        )
        .into());
    }
    let format = match chosen {
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Parquet => ExportFormat::Parquet,
        FormatArg::Json => ExportFormat::Json,
    };
    args.series.check()?;
    let vault = open_existing(config).await?;
    let series = args.series.key(&vault, ctx).await?;
    match vault.export(&series, range, format, out.as_deref(), ctx).await {
        Ok(rows) => {
            match &out {
                Some(path) => say!("exported {rows} rows of {series} to {} ({})", path.display(), chosen.name()),
                None => tracing::info!(rows, "exported to standard output"),
            }
            Ok(exit::OK)
        }
        // The reader went away (`| head`): not an error of ours.
        Err(StorageError::Io { source, .. }) if out.is_none() && source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(exit::OK)
        }
        Err(StorageError::NotFound { .. }) => Err(vault.not_found(&series, ctx).await.into()),
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
    args.series.check()?;
    let vault = open_existing(config).await?;
    let series = args.series.key(&vault, ctx).await?;
    let Some(info) = vault.info(&series, ctx).await? else {
        return Err(vault.not_found(&series, ctx).await.into());
    };
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
        for n in &report.notes {
            say!("  note: {}  {}  {}", kind_name(&n.kind), n.path.display(), n.detail);
        }
    }
    Ok(if report.is_clean() { exit::OK } else { exit::FAILURE })
}

async fn recover(config: &StorageConfig, args: RecoverArgs) -> anyhow::Result<u8> {
    let scope = args.scope.scope()?;
    let vault = open_existing(config).await?;
    let report = vault.recover_with(scope, args.forget_missing).await?;
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
    let options = CleanupOptions { dry_run: args.dry_run, force: args.force, confirm: args.confirm_removal };
    let report = vault.cleanup_with(chrono::Utc::now(), options, ctx).await?;
    let refused = !report.dry_run && !report.applied;
    let code = if refused { exit::USAGE } else { exit::OK };
    if args.json {
        say!("{}", json_text(&report)?);
        return Ok(code);
    }
    let plan = &report.plan;
    let verb = if report.applied { "removed" } else { "would remove" };
    say!(
        "retention {} days: bars before {} go{}",
        report.retention_days,
        plan.cutoff.as_deref().unwrap_or("-"),
        if report.dry_run { " (dry run: nothing changed)" } else { "" }
    );
    if plan.series.is_empty() && plan.temp_files.is_empty() && plan.backups.is_empty() {
        say!("nothing to clean up");
    }
    for t in &plan.series {
        let emptied = if t.rows_kept == 0 { " (the whole series)" } else { "" };
        say!("{}: {verb} {} rows, {} kept{emptied}", t.series, t.rows_removed, t.rows_kept);
    }
    for p in &plan.temp_files {
        say!("{}: {verb} (old temp file)", p.display());
    }
    for p in &plan.backups {
        say!("{}: {verb} (old backup)", p.display());
    }
    if !plan.series.is_empty() {
        say!("{verb} {} of {} rows stored", plan.rows_removed, plan.rows_stored);
    }
    if let Some(why) = &report.needs_confirmation {
        let note = format!("this cleanup needs --confirm-removal: {why}");
        if refused {
            tell!("error: refused, nothing changed: {note}");
        } else if !report.applied {
            say!("note: {note}");
        }
    }
    Ok(code)
}

// ---------------------------------------------------------------------------------------
// delete, rename

async fn delete(config: &StorageConfig, args: DeleteArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let series = args.series.key()?;
    let vault = open_existing(config).await?;
    let report = vault.delete_series(&series, args.dry_run, ctx).await?;
    if args.json {
        say!("{}", json_text(&report)?);
        return Ok(exit::OK);
    }
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    say!(
        "{series}: {verb} {} file(s){}",
        report.files.len(),
        if args.dry_run { " (dry run: nothing changed)" } else { "" }
    );
    for f in &report.files {
        say!("  {}", f.display());
    }
    Ok(exit::OK)
}

async fn rename(config: &StorageConfig, args: RenameArgs, ctx: &OpContext) -> anyhow::Result<u8> {
    let from = args.series.key()?;
    let kind = args.to_type.unwrap_or(args.series.kind);
    let symbol = args.to_symbol.as_deref().unwrap_or(&args.series.symbol);
    let to = series_key(kind, symbol, args.to_period.unwrap_or(args.series.period))
        .map_err(|e| UsageError(e.to_string().replace("--symbol", "--to-symbol")))?;
    let vault = open_existing(config).await?;
    let report = vault.rename_series(&from, &to, ctx).await?;
    say!("{} is now {} ({} rows)", report.from, report.to, report.rows);
    Ok(exit::OK)
}
