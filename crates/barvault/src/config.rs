//! `StorageConfig`: the seed's fields and defaults, loaded in layers
//! (defaults < `barvault.toml` < `BARVAULT_*` environment < explicit overrides) with the
//! origin of every value kept, so `barvault config` can say where each came from and
//! an invalid value is reported with its field, origin and what is allowed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use barvault_domain::{MergePolicy, ValidationPolicy};
use barvault_parquet::ParquetCompression;
use serde::Serialize;
use thiserror::Error;

/// The file read from the working directory when no path is given (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "barvault.toml";
/// Prefix of the environment variables, e.g. `BARVAULT_OUTPUT_DIRECTORY`.
pub const ENV_PREFIX: &str = "BARVAULT_";

/// Every configuration field, in display order.
pub const FIELDS: [&str; 11] = [
    "output_directory",
    "backup_enabled",
    "compression",
    "max_file_size_mb",
    "min_free_space_gb",
    "cleanup_enabled",
    "retention_days",
    "lock_timeout_secs",
    "validation",
    "merge_policy",
    "csv_utc_marker",
];

/// Storage configuration (the seed's `StorageConfig`, plus locking, validation and merge policy).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageConfig {
    /// Base directory of the store; always absolute once loaded. Or `s3://BUCKET/PREFIX`:
    /// the store on object storage (see [`StorageConfig::bucket`]).
    pub output_directory: PathBuf,
    /// Keep a Parquet copy of every series beside the CSV.
    pub backup_enabled: bool,
    #[serde(serialize_with = "as_display")]
    pub compression: ParquetCompression,
    /// Files larger than this are reported by `health` (1..=1000).
    pub max_file_size_mb: u64,
    /// Under this much space available to the store (GiB), `health` is in warning
    /// (0..=1000000; 0 turns the check off).
    pub min_free_space_gb: f64,
    /// Whether `cleanup` runs without `--force`.
    pub cleanup_enabled: bool,
    /// Bars, backups and temp files older than this many days are removed by cleanup;
    /// `None` (the default): no retention, cleanup removes nothing. A bar store keeps
    /// history, so deleting it must be asked for.
    pub retention_days: Option<u32>,
    /// How long a writer waits for another writer of the same series.
    pub lock_timeout_secs: f64,
    pub validation: ValidationPolicy,
    pub merge_policy: MergePolicy,
    /// Timestamps of the CSV copy end in `Z` (UTC), so that readers type them as the
    /// Parquet copy's; `false` writes them naive, as barvault 0.1 did.
    pub csv_utc_marker: bool,
    /// How to reach object storage: `object_store` keys (region, endpoint, credentials,
    /// ...), from the `[object_store]` table of the config file and the `AWS_*`
    /// environment, the environment winning. Secrets are masked when serialized.
    #[serde(serialize_with = "crate::object_config::masked_options")]
    pub object_store: BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            output_directory: absolute(Path::new("./data")),
            backup_enabled: true,
            compression: ParquetCompression::default(),
            max_file_size_mb: 100,
            min_free_space_gb: 1.0,
            cleanup_enabled: false,
            retention_days: None,
            lock_timeout_secs: 30.0,
            validation: ValidationPolicy::Strict,
            merge_policy: MergePolicy::KeepLast,
            csv_utc_marker: true,
            object_store: BTreeMap::new(),
        }
    }
}

impl StorageConfig {
    /// Defaults with `dir` as the output directory (made absolute; an `s3://` address is
    /// kept as it is).
    pub fn with_output_directory(dir: impl AsRef<Path>) -> Self {
        Self { output_directory: crate::object_config::store_path(dir.as_ref()), ..Self::default() }
    }

    pub fn lock_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.lock_timeout_secs)
    }

    /// Loads the configuration from the process environment and `sources`.
    pub fn load(sources: &ConfigSources) -> Result<LoadedConfig, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) || k.starts_with(crate::object_config::AWS_PREFIX))
            .collect();
        Self::load_with_env(sources, &env)
    }

    /// Loads the configuration with an explicit environment (for tests and embedding).
    pub fn load_with_env(sources: &ConfigSources, env: &BTreeMap<String, String>) -> Result<LoadedConfig, ConfigError> {
        let mut raw: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();
        let mut object_store = crate::object_config::from_env(env);
        if let Some((path, values, table)) = read_file(sources)? {
            for (field, value) in values {
                raw.insert(field, (value, Origin::File(path.clone())));
            }
            object_store = crate::object_config::from_file(&path, table)?.merged_under(object_store);
        }
        for field in FIELDS {
            let var = format!("{ENV_PREFIX}{}", field.to_ascii_uppercase());
            if let Some(v) = env.get(&var) {
                raw.insert(field, (v.clone(), Origin::Env(var)));
            }
        }
        for (field, value) in &sources.overrides {
            let Some(field) = FIELDS.iter().find(|f| **f == field.as_str()) else {
                return Err(ConfigError::UnknownField { field: field.clone(), origin: Origin::Flag });
            };
            raw.insert(field, (value.clone(), Origin::Flag));
        }

        let mut cfg = StorageConfig::default();
        let mut origins = BTreeMap::new();
        for field in FIELDS {
            let Some((value, origin)) = raw.remove(field) else {
                origins.insert(field, Origin::Default);
                continue;
            };
            apply(&mut cfg, field, &value).map_err(|allowed| ConfigError::Invalid {
                field,
                value: value.clone(),
                origin: origin.clone(),
                allowed,
            })?;
            origins.insert(field, origin);
        }
        cfg.object_store = object_store.values();
        Ok(LoadedConfig { config: cfg, origins, object_store: object_store.origins() })
    }

    /// The bucket and prefix of a store on object storage; `None` for a directory.
    pub fn bucket(&self) -> Option<barvault_s3::S3Url> {
        let text = self.output_directory.to_str()?;
        barvault_s3::S3Url::is_object_url(text).then(|| barvault_s3::S3Url::parse(text).ok()).flatten()
    }
}

fn as_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Where configuration comes from besides the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// An explicit file (must exist); when `None`, `barvault.toml` in `working_dir` is read if present.
    pub file: Option<PathBuf>,
    /// Directory searched for `barvault.toml`; the current directory when `None`.
    pub working_dir: Option<PathBuf>,
    /// Highest-priority values (command-line flags), by field name.
    pub overrides: Vec<(String, String)>,
}

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", content = "name", rename_all = "lowercase")]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(v) => write!(f, "environment {v}"),
            Origin::Flag => f.write_str("command line"),
        }
    }
}

/// The effective configuration and the origin of every field.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedConfig {
    pub config: StorageConfig,
    pub origins: BTreeMap<&'static str, Origin>,
    /// The origin of every `[object_store]` option set (file table or `AWS_*` variable).
    pub object_store: BTreeMap<String, Origin>,
}

impl LoadedConfig {
    /// `(key, value as shown, origin)` of every `[object_store]` option set, secrets masked.
    pub fn object_store_entries(&self) -> Vec<(&str, String, Option<&Origin>)> {
        crate::object_config::shown(&self.config.object_store, &self.object_store)
    }

    /// `(field, value as text, origin)` for every field, in [`FIELDS`] order.
    pub fn entries(&self) -> Vec<(&'static str, String, &Origin)> {
        let c = &self.config;
        FIELDS
            .iter()
            .map(|&f| {
                let v = match f {
                    "output_directory" => c.output_directory.display().to_string(),
                    "backup_enabled" => c.backup_enabled.to_string(),
                    "compression" => c.compression.to_string(),
                    "max_file_size_mb" => c.max_file_size_mb.to_string(),
                    "min_free_space_gb" => c.min_free_space_gb.to_string(),
                    "cleanup_enabled" => c.cleanup_enabled.to_string(),
                    "retention_days" => c.retention_days.map_or_else(|| "none".to_string(), |d| d.to_string()),
                    "lock_timeout_secs" => c.lock_timeout_secs.to_string(),
                    "validation" => c.validation.to_string(),
                    "csv_utc_marker" => c.csv_utc_marker.to_string(),
                    _ => c.merge_policy.to_string(),
                };
                (f, v, self.origins.get(f).unwrap_or(&Origin::Default))
            })
            .collect()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid {field} = {value:?} (from {origin}): {allowed}")]
    Invalid { field: &'static str, value: String, origin: Origin, allowed: String },
    #[error("unknown configuration field {field:?} (from {origin}); known fields: {}", FIELDS.join(", "))]
    UnknownField { field: String, origin: Origin },
    #[error("cannot read configuration file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
}

/// A configuration file, the raw text of each field it sets, and its `[object_store]` table.
type FileValues = (PathBuf, Vec<(&'static str, String)>, BTreeMap<String, config::Value>);

fn read_file(sources: &ConfigSources) -> Result<Option<FileValues>, ConfigError> {
    let path = match &sources.file {
        Some(p) => p.clone(),
        None => {
            let dir = sources.working_dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let p = dir.join(DEFAULT_CONFIG_FILE);
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    let file_err = |reason: String| ConfigError::File { path: path.clone(), reason };
    if !path.is_file() {
        return Err(file_err("no such file".into()));
    }
    let cfg = config::Config::builder()
        .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml).required(true))
        .build()
        .map_err(|e| file_err(e.to_string()))?;
    let table: BTreeMap<String, config::Value> = cfg.try_deserialize().map_err(|e| file_err(e.to_string()))?;
    let mut values = Vec::new();
    let mut object_store = BTreeMap::new();
    for (key, value) in table {
        if key == crate::object_config::TABLE {
            object_store = value
                .into_table()
                .map_err(|e| ConfigError::Invalid {
                    field: crate::object_config::TABLE,
                    value: String::new(),
                    origin: Origin::File(path.clone()),
                    allowed: format!("a table of object_store options: {e}"),
                })?
                .into_iter()
                .collect();
            continue;
        }
        let Some(field) = FIELDS.iter().find(|f| **f == key.as_str()) else {
            return Err(ConfigError::UnknownField { field: key, origin: Origin::File(path.clone()) });
        };
        let text = value.into_string().map_err(|e| ConfigError::Invalid {
            field,
            value: String::new(),
            origin: Origin::File(path.clone()),
            allowed: format!("expected a single value: {e}"),
        })?;
        values.push((*field, text));
    }
    Ok(Some((path, values, object_store)))
}

/// Parses `value` into `field` of `cfg`; on failure returns what is allowed.
fn apply(cfg: &mut StorageConfig, field: &str, value: &str) -> Result<(), String> {
    let v = value.trim();
    match field {
        "output_directory" => {
            if v.is_empty() {
                return Err("a directory path (or s3://BUCKET/PREFIX) is required".into());
            }
            if barvault_s3::S3Url::is_object_url(v) {
                barvault_s3::S3Url::parse(v)?;
            }
            cfg.output_directory = crate::object_config::store_path(Path::new(v));
        }
        "backup_enabled" => cfg.backup_enabled = parse_bool(v)?,
        "cleanup_enabled" => cfg.cleanup_enabled = parse_bool(v)?,
        "compression" => {
            cfg.compression =
                v.to_ascii_lowercase().parse().map_err(|_| "one of snappy, zstd, lz4, gzip, none".to_string())?;
        }
        "max_file_size_mb" => cfg.max_file_size_mb = parse_int(v, 1, 1000)?,
        "min_free_space_gb" => {
            let allowed = || "a number of GiB from 0 to 1000000 (0: no check)".to_string();
            let g: f64 = v.parse().map_err(|_| allowed())?;
            if !(0.0..=1_000_000.0).contains(&g) {
                return Err(allowed());
            }
            cfg.min_free_space_gb = g;
        }
        "retention_days" => {
            cfg.retention_days = match v.to_ascii_lowercase().as_str() {
                "" | "none" | "off" => None,
                _ => Some(parse_int(v, 1, 36_500).map_err(|e| format!("{e}, or none (no retention)"))? as u32),
            }
        }
        "csv_utc_marker" => cfg.csv_utc_marker = parse_bool(v)?,
        "lock_timeout_secs" => {
            let t: f64 = v.parse().map_err(|_| "a number of seconds from 0 to 86400".to_string())?;
            if !(0.0..=86_400.0).contains(&t) {
                return Err("a number of seconds from 0 to 86400".into());
            }
            cfg.lock_timeout_secs = t;
        }
        "validation" => cfg.validation = v.to_ascii_lowercase().parse()?,
        "merge_policy" => cfg.merge_policy = v.to_ascii_lowercase().parse()?,
        _ => return Err(format!("unknown field; known fields: {}", FIELDS.join(", "))),
    }
    Ok(())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("true or false".into()),
    }
}

fn parse_int(v: &str, min: u64, max: u64) -> Result<u64, String> {
    let allowed = || format!("a whole number from {min} to {max}");
    let n: u64 = v.parse().map_err(|_| allowed())?;
    if !(min..=max).contains(&n) {
        return Err(allowed());
    }
    Ok(n)
}

/// Makes `p` absolute against the current directory, without touching the file system
/// beyond reading the current directory (the directory need not exist yet).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn empty_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn defaults_match_the_seed() {
        let dir = empty_dir();
        let sources = ConfigSources { working_dir: Some(dir.path().into()), ..Default::default() };
        let loaded = StorageConfig::load_with_env(&sources, &BTreeMap::new()).unwrap();
        let c = &loaded.config;
        assert!(c.output_directory.is_absolute());
        assert!(c.output_directory.ends_with("data"));
        assert!(c.backup_enabled);
        assert_eq!(c.compression, ParquetCompression::Lz4);
        assert_eq!(c.max_file_size_mb, 100);
        assert_eq!(c.min_free_space_gb, 1.0);
        assert!(!c.cleanup_enabled);
        assert_eq!(c.retention_days, None, "no retention unless asked for");
        assert!(c.csv_utc_marker);
        assert!(loaded.origins.values().all(|o| *o == Origin::Default));
    }

    #[test]
    fn layers_override_in_order() {
        let dir = empty_dir();
        std::fs::write(
            dir.path().join(DEFAULT_CONFIG_FILE),
            "output_directory = \"/tmp/from-file\"\nretention_days = 30\nbackup_enabled = false\n",
        )
        .unwrap();
        let sources = ConfigSources {
            working_dir: Some(dir.path().into()),
            overrides: vec![("output_directory".into(), "/tmp/from-flag".into())],
            ..Default::default()
        };
        let e = env(&[("BARVAULT_OUTPUT_DIRECTORY", "/tmp/from-env"), ("BARVAULT_RETENTION_DAYS", "60")]);
        let loaded = StorageConfig::load_with_env(&sources, &e).unwrap();
        assert_eq!(loaded.config.output_directory, PathBuf::from("/tmp/from-flag"));
        assert_eq!(loaded.config.retention_days, Some(60));
        assert!(!loaded.config.backup_enabled);
        assert_eq!(loaded.origins["output_directory"], Origin::Flag);
        assert_eq!(loaded.origins["retention_days"], Origin::Env("BARVAULT_RETENTION_DAYS".into()));
        assert!(matches!(loaded.origins["backup_enabled"], Origin::File(_)));

        let no_flag = ConfigSources { working_dir: Some(dir.path().into()), ..Default::default() };
        let loaded = StorageConfig::load_with_env(&no_flag, &e).unwrap();
        assert_eq!(loaded.config.output_directory, PathBuf::from("/tmp/from-env"));
        let loaded = StorageConfig::load_with_env(&no_flag, &BTreeMap::new()).unwrap();
        assert_eq!(loaded.config.output_directory, PathBuf::from("/tmp/from-file"));
    }

    #[test]
    fn invalid_values_name_field_origin_and_allowed() {
        let dir = empty_dir();
        let sources = ConfigSources { working_dir: Some(dir.path().into()), ..Default::default() };
        let err = StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_MAX_FILE_SIZE_MB", "5000")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("max_file_size_mb"), "{msg}");
        assert!(msg.contains("BARVAULT_MAX_FILE_SIZE_MB"), "{msg}");
        assert!(msg.contains("1 to 1000"), "{msg}");
        let err = StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_COMPRESSION", "rar")])).unwrap_err();
        assert!(err.to_string().contains("snappy, zstd"), "{err}");
        let err = StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_BACKUP_ENABLED", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
        for bad in ["-1", "NaN", "inf", "1e7", "lots"] {
            let err = StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_MIN_FREE_SPACE_GB", bad)])).unwrap_err();
            assert!(err.to_string().contains("min_free_space_gb") && err.to_string().contains("0 to 1000000"), "{err}");
        }
        let loaded = StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_MIN_FREE_SPACE_GB", "0.5")])).unwrap();
        assert_eq!(loaded.config.min_free_space_gb, 0.5);
        let shown = loaded.entries().into_iter().find(|(f, ..)| *f == "min_free_space_gb").unwrap();
        assert_eq!(shown.1, "0.5");
    }

    #[test]
    fn file_errors_are_reported() {
        let dir = empty_dir();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "backup_enable = true\n").unwrap();
        let sources = ConfigSources { file: Some(p.clone()), ..Default::default() };
        let err = StorageConfig::load_with_env(&sources, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("backup_enable"), "{err}");
        std::fs::write(&p, "max_file_size_mb = 0\n").unwrap();
        let err = StorageConfig::load_with_env(&sources, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        let missing = ConfigSources { file: Some(dir.path().join("nope.toml")), ..Default::default() };
        assert!(matches!(StorageConfig::load_with_env(&missing, &BTreeMap::new()), Err(ConfigError::File { .. })));
    }

    #[test]
    fn retention_can_be_set_and_unset() {
        let dir = empty_dir();
        let sources = ConfigSources { working_dir: Some(dir.path().into()), ..Default::default() };
        let load = |v: &str| StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_RETENTION_DAYS", v)]));
        assert_eq!(load("730").unwrap().config.retention_days, Some(730));
        assert_eq!(load("none").unwrap().config.retention_days, None);
        assert_eq!(load("").unwrap().config.retention_days, None);
        let err = load("0").unwrap_err().to_string();
        assert!(err.contains("none (no retention)"), "{err}");
        let loaded = load("none").unwrap();
        let shown = loaded.entries().into_iter().find(|(f, _, _)| *f == "retention_days").unwrap();
        assert_eq!(shown.1, "none");
    }

    #[test]
    fn unrelated_barvault_variables_are_ignored() {
        let dir = empty_dir();
        let sources = ConfigSources { working_dir: Some(dir.path().into()), ..Default::default() };
        assert!(StorageConfig::load_with_env(&sources, &env(&[("BARVAULT_PYTHON", "/x")])).is_ok());
    }
}
