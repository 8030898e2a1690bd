//! The barvault application layer: where adapters are chosen and wired, and where the
//! operations an operator runs (import, export, verify, recover, health, cleanup) are
//! composed from ports.
//!
//! Users who want the whole engine depend on this crate alone: [`StorageFactory`] turns a
//! [`StorageConfig`] into a [`Vault`] (the file-backed store with every operation) or a bare
//! [`DualStorageManager`], and the domain and port vocabulary is re-exported so no second
//! dependency is needed. Everything that decides *how* to store stays in the adapters;
//! everything that decides *what is correct* stays in the domain.

pub mod arrow;
mod cleanup;
mod config;
mod dual;
mod export;
mod health;
mod input;
mod integrity;
mod object_config;
mod on_bucket;
mod receipt;
mod series_admin;
mod session;
pub mod timearg;
mod vault;

#[cfg(feature = "polars")]
pub mod polars;

pub use cleanup::{CleanupOptions, CleanupPlan, CleanupReport, MAX_UNCONFIRMED_SHARE, SeriesTrim};
pub use config::{
    ConfigError, ConfigSources, DEFAULT_CONFIG_FILE, ENV_PREFIX, FIELDS, LoadedConfig, Origin, StorageConfig,
};
pub use dual::{APPEND_LAG_ROWS, DualSettings, DualStorageManager, MAX_ATTEMPTS, PersistOutcome};
pub use health::{DiskUsage, HealthReport, HealthStatus};
pub use input::{InputOptions, STDIN, Tz, is_stdin, parse_zone, symbol_from_file_name};
pub use integrity::{Issue, IssueKind, RecoveryAction, RecoveryReport, Scope, VerifyReport};
pub use receipt::{PersistOptions, SecondaryStatus, StorageReceipt, WriteMode};
pub use series_admin::{DeleteReport, RenameReport};
pub use session::RowsPersisted;
pub use vault::{
    ExportFormat, FileImport, ImportLimits, ImportOptions, SeriesFile, SeriesInfo, SeriesSummary, StorageFactory, Vault,
};

pub use barvault_csv::CsvCodec;
pub use barvault_domain as domain;
pub use barvault_domain::{
    Bars, Instrument, InstrumentKind, MergePolicy, MergeStats, Period, SeriesKey, Symbol, TimeRange, ValidationPolicy,
};
pub use barvault_fs::{Fault, FaultyFs, Fs, FsOp, RealFs, remove_in_flight};
pub use barvault_parquet::{ParquetCodec, ParquetCompression};
pub use barvault_ports as ports;
pub use barvault_ports::{
    BarStore, FileInfo, FileMetadata, Housekeeping, MetadataStore, OpContext, SeriesLocks, StorageError,
};
pub use barvault_s3 as s3;
