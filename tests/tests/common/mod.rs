//! Helpers shared by the integration tests: contexts, stores wired from real or in-memory
//! adapters, and small file utilities. Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use barvault::{
    Bars, DualSettings, DualStorageManager, OpContext, SeriesKey, StorageConfig, StorageFactory, ValidationPolicy,
    Vault,
};
use barvault_ports::memory::{InMemoryBarStore, InMemoryLocks, InMemoryMetadataStore};
use barvault_ports::{BarStore, LoadOptions, SeriesLocks};

pub fn ctx() -> OpContext {
    OpContext::with_correlation_id(Some("integration-test"))
}

/// A config over `dir` with validation off, so fixtures with extreme floats are accepted,
/// and no free-space threshold, so `health` does not depend on the test machine's disk.
pub fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        validation: ValidationPolicy::Off,
        min_free_space_gb: 0.0,
        lock_timeout_secs: 5.0,
        ..StorageConfig::with_output_directory(dir)
    }
}

/// The real file-backed vault over `dir`.
pub fn vault(dir: &Path) -> Vault {
    StorageFactory::open(&config(dir)).expect("open vault")
}

/// The in-memory pieces of a dual manager, kept so a test can reach each one.
#[derive(Debug)]
pub struct MemoryDual {
    pub csv: Arc<dyn BarStore>,
    pub parquet: Arc<dyn BarStore>,
    pub metadata: Arc<InMemoryMetadataStore>,
    pub locks: Arc<dyn SeriesLocks>,
    pub manager: DualStorageManager,
}

/// A dual manager over the given primary and secondary stores and in-memory metadata and locks.
pub fn memory_dual_over(csv: Arc<dyn BarStore>, parquet: Arc<dyn BarStore>) -> MemoryDual {
    let metadata = Arc::new(InMemoryMetadataStore::new());
    let locks: Arc<dyn SeriesLocks> = Arc::new(InMemoryLocks::new());
    let settings = DualSettings { validation: ValidationPolicy::Off, ..DualSettings::default() };
    let manager = DualStorageManager::new(
        Arc::clone(&csv),
        Some(Arc::clone(&parquet)),
        Arc::clone(&metadata) as _,
        Arc::clone(&locks),
        settings,
    );
    MemoryDual { csv, parquet, metadata, locks, manager }
}

/// A dual manager over two in-memory stores named `csv` and `parquet`.
pub fn memory_dual() -> MemoryDual {
    memory_dual_over(Arc::new(InMemoryBarStore::named("csv")), Arc::new(InMemoryBarStore::named("parquet")))
}

pub async fn load(store: &dyn BarStore, series: &SeriesKey) -> Option<Bars> {
    store
        .load(series, &LoadOptions::default(), &ctx())
        .await
        .unwrap_or_else(|e| panic!("load {series} from {}: {e}", store.name()))
        .map(|l| l.into_bars())
}

/// The CSV and Parquet data paths of `series` in `vault` (primary first).
pub fn paths(vault: &Vault, series: &SeriesKey) -> (PathBuf, PathBuf) {
    let p = vault.paths_of(series);
    assert_eq!(p.len(), 2, "expected a dual vault, got formats {:?}", vault.formats());
    (p[0].clone(), p[1].clone())
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The test data file `name`, looked up in `tests/data/real` and `tests/data/daily`.
pub fn data_file(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    ["real", "daily"]
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("test data file {name} not found under {}", root.display()))
}

/// The series as the manager serves it (with its fallbacks).
pub async fn served(manager: &DualStorageManager, series: &SeriesKey) -> Option<Bars> {
    manager.load(series, None, &ctx()).await.unwrap_or_else(|e| panic!("load {series} through the manager: {e}"))
}

/// Names of the files in `dir` (not recursive) that contain `fragment`.
pub fn names_like(dir: &Path, fragment: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.contains(fragment));
    names.sort();
    names
}

/// Every file below `dir` (recursively, lock and spare files included), sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files_below(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}
